//! Picking the images a run or an evaluation uses: one split of a dataset spec, class-balanced
//! subsets, and the images at given indices.

use anyhow::{Context, Result};

use super::{Dataset, DatasetSpec};

/// Load one split of a dataset spec; when the spec names no split, take `default_split`.
pub fn load_split(spec: &str, default_split: &str) -> Result<Dataset> {
    let parsed =
        DatasetSpec::parse(spec).map_err(|e| anyhow::anyhow!("dataset spec {spec:?}: {e}"))?;
    let sets = parsed.load().with_context(|| format!("loading {spec}"))?;
    if parsed.split.is_none() && sets.len() == 1 {
        // A single file or split: that is the data, whatever its split is called.
        return Ok(sets.into_iter().next().expect("one split"));
    }
    let want = parsed
        .split
        .clone()
        .unwrap_or_else(|| default_split.to_string());
    let names: Vec<String> = sets.iter().map(|d| d.split.clone()).collect();
    sets.into_iter()
        .find(|d| d.split == want)
        .with_context(|| format!("{spec}: no split {want:?} (found: {})", names.join(", ")))
}

/// Keep the first `n` images of each class in turn until `n` images are taken (class-balanced).
pub fn balanced_subset(d: &Dataset, n: usize) -> Dataset {
    if n >= d.len() {
        return d.clone();
    }
    let k = d.classes.len().max(1);
    let per = n.div_ceil(k);
    let mut taken = vec![0usize; k];
    let mut idx = Vec::with_capacity(n);
    for (i, &l) in d.labels.iter().enumerate() {
        if idx.len() == n {
            break;
        }
        if taken[l as usize] < per {
            taken[l as usize] += 1;
            idx.push(i);
        }
    }
    subset(d, &idx)
}

/// The images at `idx`, in that order.
pub fn subset(d: &Dataset, idx: &[usize]) -> Dataset {
    let il = d.image_len();
    let mut images = Vec::with_capacity(idx.len() * il);
    for &i in idx {
        images.extend_from_slice(d.image(i));
    }
    Dataset {
        images,
        shape: [idx.len(), d.shape[1], d.shape[2], d.shape[3]],
        labels: idx.iter().map(|&i| d.labels[i]).collect(),
        coarse: d
            .coarse
            .as_ref()
            .map(|(l, n)| (idx.iter().map(|&i| l[i]).collect(), n.clone())),
        ..d.clone()
    }
}

/// The images an evaluation runs on: the split `spec` names (the test split when it names none),
/// reduced to its first `subset` images, class-balanced.
pub fn load_eval_set(spec: &str, subset: Option<usize>) -> Result<Dataset> {
    let parsed = DatasetSpec::parse(spec).map_err(|e| anyhow::anyhow!("--data {spec:?}: {e}"))?;
    let d = load_split(spec, parsed.split.as_deref().unwrap_or("test"))?;
    Ok(match subset {
        Some(n) => balanced_subset(&d, n),
        None => d,
    })
}

/// An error unless the images of `d` (from dataset spec `spec`) have the shape a model expects.
pub fn check_input_shape(d: &Dataset, expected: [usize; 3], spec: &str) -> Result<()> {
    anyhow::ensure!(
        d.image_shape() == expected,
        "the model expects {:?} inputs, {} has {:?}",
        expected,
        spec,
        d.image_shape()
    );
    Ok(())
}

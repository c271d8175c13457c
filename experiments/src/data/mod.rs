//! Datasets: loaders for Fashion-MNIST/MNIST IDX files, CIFAR-10/100 binary files (single file,
//! extracted directory or `.tar.gz`), the released CIFAR-10-C/CIFAR-100-C corruption files
//! ([`cifar_c`]), image folders (directory or zip of class sub-folders), a
//! dataset spec string for the command line ([`spec`]) and the training pipeline
//! ([`pipeline`]: normalization, seeded shuffling and augmentation, batching).
//!
//! Everything is held in memory as `u8` NCHW images ([`Dataset`]); conversion to f32 happens per
//! batch in the pipeline.

pub mod cifar;
pub mod cifar_c;
pub mod config;
pub mod error;
pub mod folder;
pub mod idx;
pub mod npy;
pub mod pipeline;
pub mod randaugment;
pub mod report;
pub mod spec;
pub mod subset;

pub use config::DataConfig;
pub use error::{DataError, Location};
pub use pipeline::{Augment, Batch, Loader, Normalization, PaddingMode};
pub use randaugment::RandAugment;
pub use spec::{DatasetSpec, Kind};
pub use subset::{balanced_subset, check_input_shape, load_eval_set, load_split, subset};

/// One split of a dataset, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Dataset name, e.g. `cifar10`, `fashion-mnist`, `folder`.
    pub name: String,
    /// Split name, e.g. `train`, `test`.
    pub split: String,
    /// Where it was read from (file, directory or archive, with entries).
    pub source: String,
    /// Image bytes, NCHW, row-major, `shape[0]*shape[1]*shape[2]*shape[3]` of them.
    pub images: Vec<u8>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// Label of each image, `0..classes.len()`.
    pub labels: Vec<u16>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Secondary labels and their names (CIFAR-100 coarse labels), if the format has them.
    pub coarse: Option<(Vec<u16>, Vec<String>)>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.shape[0]
    }
    /// Whether the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }
    /// `[C, H, W]` of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.shape[1], self.shape[2], self.shape[3]]
    }
    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }
    /// The CHW bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.images[i * l..(i + 1) * l]
    }
    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0usize; self.classes.len()];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Per-channel mean and standard deviation (population) of the pixels scaled to [0, 1],
    /// accumulated exactly in integers.
    pub fn channel_mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let [n, c, h, w] = self.shape;
        let hw = h * w;
        let mut mean = vec![0.0; c];
        let mut std = vec![0.0; c];
        if n == 0 || hw == 0 {
            return (mean, std);
        }
        for ch in 0..c {
            let (s, s2) = (0..n)
                .map(|i| {
                    let px = &self.images[(i * c + ch) * hw..(i * c + ch + 1) * hw];
                    px.iter().fold((0u64, 0u64), |(a, b), &v| {
                        (a + v as u64, b + (v as u64) * (v as u64))
                    })
                })
                .fold((0u64, 0u64), |(a, b), (x, y)| (a + x, b + y));
            let cnt = (n * hw) as f64;
            let m = s as f64 / cnt;
            let var = (s2 as f64 / cnt - m * m).max(0.0);
            mean[ch] = m / 255.0;
            std[ch] = var.sqrt() / 255.0;
        }
        (mean, std)
    }

    /// The dataset restricted to the given indices (in that order).
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let l = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * l);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            name: self.name.clone(),
            split: self.split.clone(),
            source: self.source.clone(),
            images,
            shape: [indices.len(), self.shape[1], self.shape[2], self.shape[3]],
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            coarse: self
                .coarse
                .as_ref()
                .map(|(c, names)| (indices.iter().map(|&i| c[i]).collect(), names.clone())),
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn first(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&idx)
    }

    /// A class-balanced subset: the first `per_class` images of each class, in dataset order.
    /// Classes with fewer images contribute all they have.
    pub fn balanced(&self, per_class: usize) -> Dataset {
        let mut taken = vec![0usize; self.classes.len()];
        let mut idx = Vec::new();
        for (i, &l) in self.labels.iter().enumerate() {
            if taken[l as usize] < per_class {
                taken[l as usize] += 1;
                idx.push(i);
            }
        }
        self.select(&idx)
    }

    /// Check internal consistency (sizes, label range); loaders call this before returning.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.shape[0];
        if self.images.len() != n * self.image_len() {
            return Err(format!(
                "{} image bytes for shape {:?}",
                self.images.len(),
                self.shape
            ));
        }
        if self.labels.len() != n {
            return Err(format!("{} labels for {n} images", self.labels.len()));
        }
        if let Some(i) = self
            .labels
            .iter()
            .position(|&l| l as usize >= self.classes.len())
        {
            return Err(format!(
                "label {} of image {i} is out of range for {} classes",
                self.labels[i],
                self.classes.len()
            ));
        }
        Ok(())
    }
}

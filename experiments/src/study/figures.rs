//! The figures a study's report adds, computed from the models on the study's images (digital
//! engine): for its EP models, accuracy after every free-phase step (the paper's Fig. 3a,
//! `settling.png`) and the settling trajectories of the states, the mean change of every layer
//! per step (Fig. 1, `trajectories.png`) and robust accuracy against the steps the attack's
//! gradient goes through (Fig. 3b, `t_attack.png`); for every model, adversarial examples of the same
//! images at the same ε side by side (Fig. 5, `examples.png`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::classifier::Normalize;
use crate::classifier::load::load_model;
use crate::data::{Dataset, Loader, Normalization};
use crate::device::Engine;
use crate::report::plot::{Series, line_chart};

/// An EP model of the study: its name, file and evaluation steps (default: its T1).
#[derive(Debug, Clone)]
pub struct EpModel {
    /// The study's name for it.
    pub name: String,
    /// Its checkpoint.
    pub file: PathBuf,
    /// Free-phase steps of predictions, if the study sets them.
    pub t_predict: Option<usize>,
}

impl EpModel {
    /// The model on `be`, and its evaluation steps T.
    fn load<B: Engine>(&self, be: &B) -> Result<(ep::EpNet<B>, usize)> {
        let net = load_model(be, &self.file, None)?;
        let t = self.t_predict.unwrap_or(net.spec.t1);
        Ok((net, t))
    }
}

/// The accuracy of every model on `d` after each free-phase step 1..2·T (T its evaluation steps)
/// as `out/settling.png`, and its report section.
pub fn settling<B: Engine>(
    be: &B,
    models: &[EpModel],
    d: &Dataset,
    batch_size: usize,
    out: &Path,
) -> Result<String> {
    let mut series = Vec::new();
    let mut rows = String::new();
    for m in models {
        let (net, t) = m.load(be)?;
        let n = Normalize::of_model(&net.spec);
        let norm = Normalization {
            mean: n.mean,
            std: n.std,
        };
        let curve = crate::eval::evaluate(
            be,
            &net,
            d,
            &norm,
            batch_size,
            2 * t,
            &ep::Settle::default(),
            true,
        )?
        .curve;
        let at = |k: usize| 100.0 * curve[k.clamp(1, curve.len()) - 1];
        rows += &format!(
            "| {} | {t} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            m.name,
            at(t / 4),
            at(t / 2),
            at(t),
            at(2 * t)
        );
        series.push(Series {
            label: m.name.clone(),
            points: curve
                .iter()
                .enumerate()
                .map(|(k, &a)| ((k + 1) as f64, 100.0 * a))
                .collect(),
        });
    }
    line_chart(
        &out.join("settling.png"),
        "Accuracy vs free-phase step (digital)",
        "free-phase step t",
        "accuracy (%)",
        &series,
        Some((0.0, 100.0)),
    )?;
    Ok(format!(
        "\n## Accuracy vs free-phase step (digital, %)\n\nThe EP models' free phase on the \
         study's images, run to twice the steps they are evaluated with (T).\n\n| model | T | \
         t = T/4 | t = T/2 | t = T | t = 2T |\n| --- | --- | --- | --- | --- | --- |\n{rows}\n\
         ![Accuracy vs free-phase step](settling.png)\n"
    ))
}

/// Per layer, the mean absolute distance of its state after every step 1..=`steps` of the free
/// phase of `x` (pixels, digital engine) from its state after the last step, the nearest point to
/// the fixed point this run reaches: `curves[layer][t-1] = mean |s_t − s_steps|` (the last entry
/// is 0). Two passes of the deterministic free phase, so no state is kept per step.
pub fn distances_to_end<B: Engine>(
    be: &B,
    net: &ep::EpNet<B>,
    x: &sim::Tensor,
    steps: usize,
) -> Result<Vec<Vec<f64>>> {
    let xn = be.upload_owned(Normalize::of_model(&net.spec).forward(x)?)?;
    let n = net.check_input(be, &xn)?;
    let input = net.read_input(be, &xn)?;
    let run = |each: &mut dyn FnMut(usize, &ep::State<B>) -> Result<()>| -> Result<()> {
        let mut st = net.zero_state(be, n)?;
        for t in 1..=steps {
            st = net.step_with(be, &xn, &st, None, Some(&input))?;
            net.check_state(be, &st, t)?;
            each(t, &st)?;
        }
        Ok(())
    };
    let mut end: Vec<sim::Tensor> = Vec::new();
    run(&mut |t, st| {
        if t == steps {
            end = st
                .layers
                .iter()
                .map(|l| be.host(l).map(|h| h.into_owned()))
                .collect::<sim::Result<_>>()?;
        }
        Ok(())
    })?;
    let mut curves = vec![Vec::with_capacity(steps); end.len()];
    run(&mut |_, st| {
        for (k, l) in st.layers.iter().enumerate() {
            let d = (&*be.host(l)? - &end[k]).mapv(f32::abs);
            curves[k].push(d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len().max(1) as f64);
        }
        Ok(())
    })?;
    Ok(curves)
}

/// The settling trajectories of every model's states on the first batch of `d`: per layer the
/// mean distance of the state after each step from its state after 4·T steps (T the evaluation
/// steps), as `out/trajectories.png` (log10 scale) and a table of the distances at T/4, T/2, T
/// and 2T.
pub fn trajectories<B: Engine>(
    be: &B,
    models: &[EpModel],
    d: &Dataset,
    batch_size: usize,
    out: &Path,
) -> Result<String> {
    let loader = Loader::new(d, batch_size, sim::Stream::new(0, "trajectories.data"));
    let x = loader.epoch(0).next().context("the study has no images")?.x;
    let mut series = Vec::new();
    let mut rows = String::new();
    for m in models {
        let (net, t) = m.load(be)?;
        let curves = distances_to_end(be, &net, &x, 4 * t)?;
        for (k, c) in curves.iter().enumerate() {
            let at = |s: usize| c[s.clamp(1, c.len()) - 1];
            rows += &format!(
                "| {} | {} | {:.2e} | {:.2e} | {:.2e} | {:.2e} |\n",
                m.name,
                k + 1,
                at(t / 4),
                at(t / 2),
                at(t),
                at(2 * t)
            );
            series.push(Series {
                label: format!("{} layer {}", m.name, k + 1),
                points: c
                    .iter()
                    .enumerate()
                    .map(|(s, &v)| ((s + 1) as f64, v.max(1e-12).log10()))
                    .collect(),
            });
        }
    }
    line_chart(
        &out.join("trajectories.png"),
        "Settling of the states (digital): mean |s_t − s_4T| per layer",
        "free-phase step t",
        "log10 mean distance from s_4T",
        &series,
        None,
    )?;
    Ok(format!(
        "\n## Settling trajectories (digital)\n\nPer EP model and layer (1 = first hidden layer), \
         the mean absolute distance of the state after t steps from the state after 4T steps (the \
         nearest this run gets to the fixed point), on the first {} images: how far from \
         equilibrium the free phase still is when it is read out at T.\n\n| model | layer | t = T/4 | \
         t = T/2 | t = T | t = 2T |\n| --- | --- | --- | --- | --- | --- |\n{rows}\n\
         ![Settling trajectories](trajectories.png)\n",
        x.shape()[0]
    ))
}

/// `at` at strength `eps` (`eps_text`) on `clf` over `loader` under `protocol`, seed `seed`,
/// keeping the first `keep` examples (one gradient per step: the figures use the digital engine).
#[allow(clippy::too_many_arguments)]
fn attack(
    clf: &dyn crate::classifier::Classifier,
    loader: &Loader<'_>,
    at: &super::suite::SuiteAttack,
    (eps_text, eps): (&str, f64),
    seed: u64,
    protocol: &str,
    keep: usize,
) -> Result<(super::attack::Outcome, crate::report::examples::Examples)> {
    super::attack::attack_strength_examples(
        clf,
        None,
        loader,
        &at.name,
        eps as f32,
        eps_text,
        at.steps,
        at.restarts,
        None,
        seed,
        protocol,
        keep,
    )
}

/// A model of the study for the examples figure: its name, file, evaluation steps and settle
/// (as the study evaluates it).
pub type NamedModel = (String, PathBuf, Option<usize>, ep::Settle);

/// The paper's Fig. 5: every model of the study, on the digital engine, attacked on the first
/// `n` of the study's images `d` (class-balanced) by the suite's first PGD-L∞ attack (else its
/// first attack) at that attack's largest strength, standard protocol, seed `seed`: one grid
/// `out/examples.png` (rows: images; columns: clean, then each model's adversarial image with its
/// prediction), and its report section. Empty when the suite has no attack or `n` is 0.
#[allow(clippy::too_many_arguments)]
pub fn examples<B: Engine>(
    be: &B,
    models: &[NamedModel],
    suite: &super::suite::Suite,
    d: &Dataset,
    n: usize,
    batch_size: usize,
    seed: u64,
    out: &Path,
) -> Result<String> {
    let Some(at) = suite
        .attack
        .iter()
        .find(|a| a.name == "pgd-linf")
        .or_else(|| suite.attack.first())
    else {
        return Ok(String::new());
    };
    if n == 0 || models.is_empty() {
        return Ok(String::new());
    }
    let Some((eps_text, eps)) = super::protocol::expand_eps(&at.eps)?
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return Ok(String::new());
    };
    let few = crate::data::balanced_subset(d, n);
    let loader = Loader::new(&few, batch_size, sim::Stream::new(seed, "attack.data"));
    let mut grids = Vec::new();
    let mut full_name = at.name.clone();
    for (name, file, t_predict, settle) in models {
        let target = super::target::Target {
            settle: *settle,
            model: file.clone(),
            spec: None,
            data: String::new(),
            t_predict: *t_predict,
            t_attack: None,
            subset: None,
            batch_size,
            substrate: crate::classifier::substrate::SubstrateSpec::Digital,
            eot: None,
        };
        let (clf, _, _) = target
            .classifier(be, seed)
            .with_context(|| format!("examples figure: model {name}"))?;
        let (o, ex) = attack(
            clf.as_ref(),
            &loader,
            at,
            (&eps_text, eps),
            seed,
            "standard",
            n,
        )?;
        full_name = o.name.clone();
        grids.push((name.clone(), ex));
    }
    let title = format!("{full_name}, ε = {eps_text} (standard protocol), seed {seed}");
    crate::report::examples::write_models_grid(
        &out.join("examples.png"),
        &grids,
        &d.classes,
        &title,
    )?;
    Ok(format!(
        "\n## Adversarial examples across models\n\nThe first {} of the study's images \
         (class-balanced), each model on the digital engine attacked by {title}: the paper's \
         Fig. 5.\n\n![adversarial examples](examples.png)\n",
        few.len()
    ))
}

/// The paper's Fig. 3b: robust accuracy of every EP model (digital) against the free-phase steps
/// the attack's gradient is taken through, T_attack ∈ {1, T/4, T/2, T, 2T} (T its evaluation
/// steps; predictions always after T), under the advep protocol (whose gradients may be
/// truncated), by the suite's first PGD-L∞ attack at its middle strength on the first `n` of the
/// study's images `d`, seed `seed`: `out/t_attack.png` and the report section. Empty when the
/// suite has no PGD-L∞ attack or `n` is 0.
#[allow(clippy::too_many_arguments)]
pub fn t_attack<B: Engine>(
    be: &B,
    models: &[EpModel],
    suite: &super::suite::Suite,
    d: &Dataset,
    n: usize,
    batch_size: usize,
    seed: u64,
    out: &Path,
) -> Result<String> {
    let Some(at) = suite.attack.iter().find(|a| a.name == "pgd-linf") else {
        return Ok(String::new());
    };
    if n == 0 {
        return Ok(String::new());
    }
    let mut strengths = super::protocol::expand_eps(&at.eps)?;
    strengths.sort_by(|a, b| a.1.total_cmp(&b.1));
    let Some((eps_text, eps)) = strengths.get(strengths.len() / 2).cloned() else {
        return Ok(String::new());
    };
    let few = crate::data::balanced_subset(d, n);
    let loader = Loader::new(&few, batch_size, sim::Stream::new(seed, "attack.data"));
    let mut series = Vec::new();
    let mut rows = String::new();
    let mut name = String::new();
    for m in models {
        let (net, t) = m.load(be)?;
        // 1, T/4, T/2, T, 2T (each computed once).
        let steps = [1, (t / 4).max(1), (t / 2).max(1), t, 2 * t];
        let mut done: Vec<(usize, f64)> = Vec::new();
        let _ = write!(rows, "| {} (T = {t}) |", m.name);
        for &ta in &steps {
            let acc = match done.iter().find(|d| d.0 == ta) {
                Some(d) => d.1,
                None => {
                    let clf = crate::classifier::EpClassifier::new(be, net.clone(), t, ta);
                    let (o, _) = attack(&clf, &loader, at, (&eps_text, eps), seed, "advep", 0)?;
                    name = o.name.clone();
                    let acc = o.robust as f64 / few.len().max(1) as f64;
                    done.push((ta, acc));
                    acc
                }
            };
            let _ = write!(rows, " {:.1} ({ta}) |", 100.0 * acc);
        }
        let points = done.iter().map(|&(ta, a)| (ta as f64, 100.0 * a)).collect();
        rows.push('\n');
        series.push(Series {
            label: m.name.clone(),
            points,
        });
    }
    if series.is_empty() {
        return Ok(String::new());
    }
    line_chart(
        &out.join("t_attack.png"),
        &format!(
            "robust accuracy vs T_attack ({}, ε = {eps_text}, advep)",
            at.name
        ),
        "T_attack (free-phase steps of the attack's gradient)",
        "robust accuracy (%)",
        &series,
        Some((0.0, 100.0)),
    )?;
    Ok(format!(
        "\n## Robust accuracy vs T_attack\n\nEach EP model (digital) attacked by {name} at ε = \
         {eps_text} under the advep protocol on the first {} images, its gradient taken through \
         T_attack free-phase steps (predictions after T): the paper's Fig. 3b. Robust accuracy \
         (%), with T_attack in brackets:\n\n| model | T_attack = 1 | T/4 | T/2 | T | 2T |\n| --- | --- | --- | --- | --- | --- |\n{rows}\n\
         ![robust accuracy vs T_attack](t_attack.png)\n",
        few.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::distances_to_end;
    use ep::{ConvLayer, EpNet, Loss, ModelSpec, Pool};

    /// The distances equal those of independent free phases of t and of 5 steps
    /// (`EpNet::free_phase`), layer by layer; the last is 0 and the first is not.
    #[test]
    fn distances_match_free_phases_of_each_length() {
        let be = sim::Cpu;
        let spec = ModelSpec {
            input: [1, 6, 6],
            conv: vec![ConvLayer {
                channels: 3,
                kernel: 3,
                stride: 1,
                padding: 1,
                pool: Pool::Max,
            }],
            fc: vec![4],
            act: sim::Act::MyHardSig,
            softmax: false,
            loss: Loss::Mse,
            t1: 5,
            t2: 2,
            input_norm: None,
        };
        let net = EpNet::init(&be, spec, &sim::Stream::new(3, "init"), Some(2.0)).unwrap();
        let x = sim::gradcheck::test_tensor(&[2, 1, 6, 6], 5, 1.0).mapv(|v| v.abs().min(1.0));
        let curves = distances_to_end(&be, &net, &x, 5).unwrap();
        assert_eq!(curves.len(), 2);
        let end = net.free_phase(&be, &x, 5).unwrap().layers;
        for t in 1..=5 {
            let st = net.free_phase(&be, &x, t).unwrap().layers;
            for k in 0..2 {
                let want = (&st[k] - &end[k]).mapv(f32::abs).mean().unwrap() as f64;
                assert!(
                    (curves[k][t - 1] - want).abs() <= 1e-6 * (1.0 + want),
                    "layer {k} step {t}: {} vs {want}",
                    curves[k][t - 1]
                );
            }
        }
        assert!(
            curves.iter().all(|c| c[4] == 0.0 && c[0] > 0.0),
            "{curves:?}"
        );
    }
}

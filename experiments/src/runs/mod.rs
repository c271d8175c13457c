//! Training runs: one TOML config ([`config`]) trained by one driver over the shared epoch loop
//! ([`epoch_loop`]: per-epoch evaluation, JSON Lines log, atomic checkpoint, exact resume). The
//! drivers are digital EP ([`ep`]), EP on a simulated substrate with local updates
//! ([`substrate`]) and the backprop baselines ([`bp`]); [`train`] picks the one a config asks for.

pub mod bp;
pub mod config;
pub mod ep;
pub mod epoch_loop;
pub mod substrate;

use anyhow::Result;

use crate::device::Engine;

pub use config::{AnyConfig, TrainConfig, TrainOptions};
pub use epoch_loop::EpochLog;

/// Train as `cfg` says: an EP config on the digital engine or, with `[substrate]`, on the
/// simulated substrate; a baseline config by backprop; computing on `be`. Returns the per-epoch
/// logs of this invocation.
pub fn train<B: Engine>(be: &B, cfg: &AnyConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
    match cfg {
        AnyConfig::Ep(c) => {
            let c = ep::prepare(c, opts)?;
            if c.substrate.is_some() {
                substrate::train(be, &c, opts)
            } else {
                ep::train(be, &c, opts)
            }
        }
        AnyConfig::Baseline(c) => bp::train(be, c, opts),
    }
}

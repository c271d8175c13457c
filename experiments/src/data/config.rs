//! The `[data]` section of a training config: where the train and test images come from, their
//! normalization and augmentation, and the loaders and sets it defines.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use sim::Stream;

use super::subset::{balanced_subset, load_split};
use super::{Augment, Dataset, Loader, Normalization, PaddingMode};

/// Where the data comes from and how it is preprocessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training set spec (see `epsim data info --help`), e.g. `cifar10:../shared/datasets/cifar10/cifar10-jpeg.zip:train`.
    pub train: String,
    /// Test set spec.
    pub test: String,
    /// Per-channel mean (pixels in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel std.
    pub std: Vec<f32>,
    /// Random-crop padding (0 = no crop).
    #[serde(default)]
    pub crop_padding: usize,
    /// Padding mode of the crop: "edge" or "zero".
    #[serde(default = "edge")]
    pub padding_mode: String,
    /// Random horizontal flip with p = 0.5.
    #[serde(default)]
    pub hflip: bool,
    /// Optional RandAugment-style policy after crop/flip, e.g. `{ n = 2, magnitude = 9 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randaugment: Option<super::RandAugment>,
    /// Use only the first N training images (class-balanced), for quick runs.
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Use only the first N test images.
    #[serde(default)]
    pub test_subset: Option<usize>,
}

fn edge() -> String {
    "edge".into()
}

impl DataConfig {
    /// The input normalization of a `[data]` section.
    pub fn normalization(&self) -> Result<Normalization> {
        Normalization::new(self.mean.clone(), self.std.clone())
            .map_err(|e| anyhow::anyhow!("[data] {e}"))
    }

    /// The training augmentation of a `[data]` section (None when it asks for none).
    pub fn augment(&self) -> Option<Augment> {
        if self.crop_padding == 0 && !self.hflip {
            return None;
        }
        Some(Augment {
            crop_padding: self.crop_padding,
            padding_mode: if self.padding_mode == "zero" {
                PaddingMode::Zero
            } else {
                PaddingMode::Edge
            },
            hflip: self.hflip,
        })
    }

    /// The training loader of a `[data]` section: shuffled, with its augmentation and RandAugment
    /// policy, batches of `batch`, order and draws from `stream` (normalization is the caller's: the
    /// adversarial baselines attack raw pixels).
    pub fn train_loader<'a>(&self, set: &'a Dataset, batch: usize, stream: Stream) -> Loader<'a> {
        Loader::new(set, batch, stream)
            .shuffle(true)
            .augment(self.augment())
            .randaugment(self.randaugment)
    }

    /// The train and test sets of a `[data]` section (subsets applied); errors when the images do not
    /// have the model's `input` shape.
    pub fn load(&self, input: [usize; 3]) -> Result<(Dataset, Dataset)> {
        let mut train_set = load_split(&self.train, "train")?;
        let mut test_set = load_split(&self.test, "test")?;
        if let Some(n) = self.train_subset {
            train_set = balanced_subset(&train_set, n);
        }
        if let Some(n) = self.test_subset {
            test_set = balanced_subset(&test_set, n);
        }
        if train_set.image_shape() != input {
            bail!(
                "the model expects inputs {input:?} but {} has images {:?}",
                self.train,
                train_set.image_shape()
            );
        }
        Ok((train_set, test_set))
    }
}

//! The input pipeline: per-channel normalization, seeded shuffling per epoch, seeded augmentation
//! (random crop with padding, horizontal flip) and batching into f32 NCHW tensors.
//!
//! Randomness is drawn from a [`Stream`] by (epoch, sample index), never by thread or batch
//! position: the order of epoch `e` is `stream.child("order").sub(e).permutation(n)`, and the
//! augmentation of dataset image `i` in epoch `e` uses draws `3i, 3i+1, 3i+2` of
//! `stream.child("augment").sub(e)` (crop row offset, crop column offset, flip). So a seed gives
//! the same batches whatever the thread count.

use super::Dataset;
use rayon::prelude::*;
use sim::{Stream, Tensor};

/// How the border is filled before a random crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingMode {
    /// Zeros (PyTorch `padding_mode='constant'`, fill 0).
    Zero,
    /// Repeat the edge pixel (PyTorch `padding_mode='edge'`).
    Edge,
}

/// Augmentation: PyTorch `RandomCrop(size=H×W, padding=crop_padding, padding_mode)` followed by
/// `RandomHorizontalFlip(p=0.5)` when `hflip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Padding on every side before cropping back to the original size (0: no crop).
    pub crop_padding: usize,
    /// Border fill.
    pub padding_mode: PaddingMode,
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    /// The usual CIFAR augmentation: crop 32 with padding 4 (edge), horizontal flip.
    pub fn cifar() -> Self {
        Augment {
            crop_padding: 4,
            padding_mode: PaddingMode::Edge,
            hflip: true,
        }
    }

    /// The draws for dataset image `index` from an epoch's augmentation stream: (row offset,
    /// column offset) into the padded image, each in `0..=2·padding`, and whether to flip.
    pub fn draws(&self, s: &Stream, index: usize) -> (usize, usize, bool) {
        let base = 3 * index as u64;
        let span = 2 * self.crop_padding as u64 + 1;
        let dy = s.below(base, span) as usize;
        let dx = s.below(base + 1, span) as usize;
        let flip = self.hflip && s.uniform(base + 2) < 0.5;
        (dy, dx, flip)
    }

    /// Crop (offsets `dy`, `dx` into the image padded by `crop_padding`) and optionally flip one
    /// CHW image of shape `[c, h, w]`.
    pub fn apply(
        &self,
        img: &[u8],
        shape: [usize; 3],
        dy: usize,
        dx: usize,
        flip: bool,
    ) -> Vec<u8> {
        let [c, h, w] = shape;
        let p = self.crop_padding as isize;
        let mut out = vec![0u8; c * h * w];
        for ch in 0..c {
            let plane = &img[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = y as isize + dy as isize - p;
                for x in 0..w {
                    let xs = if flip { w - 1 - x } else { x };
                    let sx = xs as isize + dx as isize - p;
                    let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                    let v = if inside {
                        plane[sy as usize * w + sx as usize]
                    } else {
                        match self.padding_mode {
                            PaddingMode::Zero => 0,
                            PaddingMode::Edge => {
                                let cy = sy.clamp(0, h as isize - 1) as usize;
                                let cx = sx.clamp(0, w as isize - 1) as usize;
                                plane[cy * w + cx]
                            }
                        }
                    };
                    out[(ch * h + y) * w + x] = v;
                }
            }
        }
        out
    }
}

/// Per-channel normalization of pixels scaled to [0, 1]: `(v/255 − mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Per-channel mean (of pixels in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (positive).
    pub std: Vec<f32>,
}

impl Normalization {
    /// No normalization beyond scaling to [0, 1], for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Given mean and std; they must have the same length and every std must be positive.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self, String> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(format!(
                "normalization needs one mean and one std per channel, got {} and {}",
                mean.len(),
                std.len()
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("normalization std must be positive, got {s}"));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("normalization mean must be finite, got {m}"));
        }
        Ok(Normalization { mean, std })
    }

    /// Mean and std computed from a dataset (a channel with zero spread gets std 1).
    pub fn from_dataset(d: &Dataset) -> Self {
        let (m, s) = d.channel_mean_std();
        Normalization {
            mean: m.iter().map(|&v| v as f32).collect(),
            std: s
                .iter()
                .map(|&v| if v > 0.0 { v as f32 } else { 1.0 })
                .collect(),
        }
    }

    /// Normalize one CHW u8 image into `out`.
    pub fn apply(&self, img: &[u8], channels: usize, out: &mut [f32]) {
        let hw = img.len() / channels;
        for c in 0..channels {
            let (m, s) = (self.mean[c], self.std[c]);
            for (o, &v) in out[c * hw..(c + 1) * hw]
                .iter_mut()
                .zip(&img[c * hw..(c + 1) * hw])
            {
                *o = (v as f32 / 255.0 - m) / s;
            }
        }
    }
}

/// One batch: images `[B, C, H, W]` f32 and their labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Images, NCHW, normalized.
    pub x: Tensor,
    /// Labels.
    pub y: Vec<usize>,
    /// Dataset indices of the images.
    pub indices: Vec<usize>,
}

/// Batches of a dataset, epoch by epoch.
#[derive(Debug, Clone)]
pub struct Loader<'a> {
    data: &'a Dataset,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    augment: Option<Augment>,
    randaugment: Option<super::RandAugment>,
    norm: Normalization,
    stream: Stream,
}

impl<'a> Loader<'a> {
    /// A loader with batches of `batch_size` (≥ 1) in dataset order, no augmentation, pixels
    /// scaled to [0, 1]. `stream` is the data stream of the run (e.g. `Stream::new(seed, "data")`).
    pub fn new(data: &'a Dataset, batch_size: usize, stream: Stream) -> Self {
        Loader {
            data,
            batch_size: batch_size.max(1),
            shuffle: false,
            drop_last: false,
            augment: None,
            randaugment: None,
            norm: Normalization::identity(data.shape[1]),
            stream,
        }
    }
    /// Shuffle every epoch.
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }
    /// Drop the last incomplete batch.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    /// Augment every image.
    /// A RandAugment-style policy applied after crop/flip (draws from the stream's child
    /// `randaugment`, per epoch and image index).
    pub fn randaugment(mut self, r: Option<super::RandAugment>) -> Self {
        self.randaugment = r;
        self
    }
    /// Crop/flip augmentation.
    pub fn augment(mut self, a: Option<Augment>) -> Self {
        self.augment = a;
        self
    }
    /// Normalize with these statistics; an error if their channel count is not the dataset's.
    pub fn normalize(mut self, n: Normalization) -> Result<Self, String> {
        if n.mean.len() != self.data.shape[1] || n.std.len() != self.data.shape[1] {
            return Err(format!(
                "normalization has {} means and {} stds, the dataset {} has {} channels",
                n.mean.len(),
                n.std.len(),
                self.data.name,
                self.data.shape[1]
            ));
        }
        self.norm = n;
        Ok(self)
    }

    /// Dataset indices in the order of epoch `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        if self.shuffle {
            self.stream
                .child("order")
                .sub(epoch)
                .permutation(self.data.len())
        } else {
            (0..self.data.len()).collect()
        }
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.data.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// Build the batch of the given dataset indices for epoch `epoch`.
    pub fn make_batch(&self, epoch: u64, indices: &[usize]) -> Batch {
        let [_, c, h, w] = self.data.shape;
        let il = c * h * w;
        let aug_stream = self.stream.child("augment").sub(epoch);
        let ra_stream = self.stream.child("randaugment").sub(epoch);
        let mut x = vec![0f32; indices.len() * il];
        x.par_chunks_mut(il.max(1))
            .zip(indices.par_iter())
            .for_each(|(out, &i)| {
                let img = self.data.image(i);
                match (&self.augment, &self.randaugment) {
                    (None, None) => self.norm.apply(img, c, out),
                    (a, r) => {
                        let mut t = match a {
                            Some(a) => {
                                let (dy, dx, flip) = a.draws(&aug_stream, i);
                                a.apply(img, [c, h, w], dy, dx, flip)
                            }
                            None => img.to_vec(),
                        };
                        if let Some(r) = r {
                            r.apply(&mut t, [c, h, w], &ra_stream, i);
                        }
                        self.norm.apply(&t, c, out);
                    }
                }
            });
        Batch {
            x: sim::tensor(&[indices.len(), c, h, w], x).expect("batch sizes agree"),
            y: indices
                .iter()
                .map(|&i| self.data.labels[i] as usize)
                .collect(),
            indices: indices.to_vec(),
        }
    }

    /// The batches of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Batch> + '_ {
        let order = self.order(epoch);
        let nb = self.num_batches();
        let bs = self.batch_size;
        (0..nb).map(move |b| {
            let end = ((b + 1) * bs).min(order.len());
            self.make_batch(epoch, &order[b * bs..end])
        })
    }
}

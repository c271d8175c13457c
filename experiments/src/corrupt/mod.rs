//! Natural corruptions: the 15 CIFAR-10-C corruptions and the 4 extra (validation) ones of
//! Hendrycks & Dietterich (hendrycks/robustness `ImageNet-C/create_c/make_cifar_c.py`), with the
//! per-severity parameters the reference uses for 32×32 images.
//!
//! Conventions follow the reference: an image is 8-bit RGB, interleaved (HWC); it is scaled to
//! `x = img/255` (float64), corrupted, brought back to the 0..255 scale and stored as `uint8`
//! by **truncation** (numpy's `np.uint8(float)`). Every random draw comes from an explicit
//! [`Stream`] indexed by (field, pixel), so results depend only on the seed and the image index,
//! never on the thread count or on how a dataset is split into batches.
//!
//! Fidelity to the reference (see `/work/shared/reference/robustness.md` §4, the docs of each
//! variant, and the fixtures in `experiments/tests/fixtures/cifar_c_reference.txt`, which the tests
//! check byte for byte on CIFAR-10 test images at all five severities):
//! * deterministic corruptions, identical bytes to `make_cifar_c.py` run with numpy/scipy/
//!   skimage/Pillow/OpenCV: defocus_blur, zoom_blur, brightness, contrast, pixelate,
//!   jpeg_compression (libjpeg-turbo at PIL's defaults, [`jpeg`]), gaussian_blur, saturate;
//! * random corruptions, identical bytes to the reference when both are given the same draws
//!   (injected through `kinds::*_with` and `spatter::spatter_with`): fog (plasma fractal),
//!   glass_blur, snow (with ImageMagick 6.9.11 Q16 motion blur), spatter (OpenCV Canny, distance
//!   transform, equalizeHist, filters), elastic_transform (OpenCV 3.4 `warpAffine`, scipy
//!   `map_coordinates`) and frost (the reference's photographs, [`frost`]; draws injected
//!   through `frost::frost_with`); the motion-blur kernel itself matches ImageMagick for every
//!   angle tried;
//! * noise corruptions (gaussian, shot, impulse, speckle) follow the same formulas; their
//!   statistics are tested.
//!
//! The draws themselves come from Philox streams, not numpy's global Mersenne Twister, so random
//! corruptions equal the released CIFAR-10-C in distribution, not bitwise. For paper-faithful
//! numbers evaluate on the released CIFAR-10-C files (`cifar10c:DIR`); use this module for new
//! datasets, sizes and seeds.
//!
//! Grayscale images (one channel, e.g. Fashion-MNIST) are corrupted as the RGB image with three
//! equal channels, keeping the first channel of the result ([`corrupt_batch_nchw`]): per-pixel
//! noise keeps its per-channel statistics (averaging the channels would divide its variance by
//! three), and the channel-blind corruptions (blurs, contrast, brightness, fog, ...) give the
//! gray image's own result. The colour corruptions are defined on RGB: on gray images spatter and
//! frost give their red channel, and saturate leaves the image as it is (no saturation to scale).

pub mod copies;
pub mod frost;
pub mod jpeg;
pub mod kinds;
pub mod ops;
pub mod plasma;
pub mod spatter;

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use sim::rng::Stream;

/// Errors of the corruption module (bad names, severities, shapes, parameters, I/O).
#[derive(Debug, thiserror::Error)]
pub enum CorruptError {
    /// The corruption name is not one of the 19 known names.
    #[error("unknown corruption '{0}'; known names: {known}", known = Corruption::all().iter().map(|c| c.name()).collect::<Vec<_>>().join(", "))]
    UnknownName(String),
    /// Severity outside 1..=5.
    #[error("severity {0} is outside 1..=5")]
    Severity(u32),
    /// Buffer length or image size does not fit.
    #[error("shape error: {0}")]
    Shape(String),
    /// A parameter vector given to `apply_with_param` does not fit the corruption.
    #[error("parameter error for {corruption}: {msg}")]
    Param {
        /// Corruption name.
        corruption: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// File I/O failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A corruption produced a value outside 0..=255 or a NaN (a bug; reported, never clipped).
    #[error("internal error: {0}")]
    Internal(String),
    /// Image encoding or decoding failed (JPEG round trip, PNG writer).
    #[error("image codec error: {0}")]
    Codec(String),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, CorruptError>;

/// Smallest image side accepted (the reference's affine square, glass-blur loops and zoom crops
/// need a few pixels).
pub const MIN_SIDE: usize = 8;

/// One of the 19 corruptions, named as the CIFAR-10-C files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// `clip(x + N(0, c²))`, c = [.04, .06, .08, .09, .10].
    GaussianNoise,
    /// `clip(Poisson(x·c)/c)`, c = [500, 250, 100, 75, 50].
    ShotNoise,
    /// Salt and pepper (skimage `random_noise('s&p')` v0.14 semantics): each element flips with
    /// probability c ∈ [.01, .02, .03, .05, .07] to 1 or 0 (½ each).
    ImpulseNoise,
    /// OpenCV `filter2D` with the reference's anti-aliased disk kernel (bit-exact with OpenCV).
    DefocusBlur,
    /// Gaussian blur, local pixel copying (the reference's swap line copies), gaussian blur.
    GlassBlur,
    /// ImageMagick `MotionBlurImage` re-implemented (one-sided gaussian kernel along a random
    /// angle in U(−45°, 45°)); bit-exact with ImageMagick 6.9.11 Q16 for a given angle.
    MotionBlur,
    /// Average of centre-crop zooms (scipy `zoom(order=1)`), with the reference's factor counts.
    ZoomBlur,
    /// Snow layer (normal field, zoom, threshold, ImageMagick motion blur) added to a brightened
    /// image.
    Snow,
    /// Frost overlay `clip(c₀·img + c₁·frost)`: a random crop of one of the reference's frost
    /// photographs, shrunk by 0.2 (see [`frost`]).
    Frost,
    /// Diamond-square plasma fog (seeded).
    Fog,
    /// skimage HSV, `V += c`.
    Brightness,
    /// `(x − μ_channel)·c + μ_channel`.
    Contrast,
    /// Random affine warp (OpenCV 3.4 `warpAffine`, 1/32-pixel quantised bilinear) then a
    /// gaussian-smoothed random displacement field sampled with `map_coordinates(order=1,
    /// mode='reflect')`, in the reference's float32.
    ElasticTransform,
    /// Pillow BOX down- and up-sampling (bit-exact fixed point).
    Pixelate,
    /// JPEG re-encoding at quality [80, 65, 58, 50, 40] as PIL's default encoder does it
    /// (libjpeg-turbo, 4:2:0 chroma subsampling; see [`jpeg`]).
    JpegCompression,
    /// `clip(x + x·N(0, c²))` (extra corruption).
    SpeckleNoise,
    /// skimage `gaussian` (σ = c, mode nearest, truncate 4) (extra corruption).
    GaussianBlur,
    /// Water (severities 1–3) or mud (4–5) spatter (extra corruption).
    Spatter,
    /// skimage HSV, `S = S·c₀ + c₁` (extra corruption).
    Saturate,
}

const ALL: [Corruption; 19] = [
    Corruption::GaussianNoise,
    Corruption::ShotNoise,
    Corruption::ImpulseNoise,
    Corruption::DefocusBlur,
    Corruption::GlassBlur,
    Corruption::MotionBlur,
    Corruption::ZoomBlur,
    Corruption::Snow,
    Corruption::Frost,
    Corruption::Fog,
    Corruption::Brightness,
    Corruption::Contrast,
    Corruption::ElasticTransform,
    Corruption::Pixelate,
    Corruption::JpegCompression,
    Corruption::SpeckleNoise,
    Corruption::GaussianBlur,
    Corruption::Spatter,
    Corruption::Saturate,
];

impl Corruption {
    /// All 19 corruptions in the reference order (15 standard, then the 4 extras).
    pub fn all() -> &'static [Corruption] {
        &ALL
    }

    /// The 15 standard CIFAR-10-C corruptions (the RobustBench set).
    pub fn standard() -> &'static [Corruption] {
        &ALL[..15]
    }

    /// The CIFAR-10-C file name (`gaussian_noise`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::ZoomBlur => "zoom_blur",
            Corruption::Snow => "snow",
            Corruption::Frost => "frost",
            Corruption::Fog => "fog",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::ElasticTransform => "elastic_transform",
            Corruption::Pixelate => "pixelate",
            Corruption::JpegCompression => "jpeg_compression",
            Corruption::SpeckleNoise => "speckle_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Spatter => "spatter",
            Corruption::Saturate => "saturate",
        }
    }

    /// Parse a CIFAR-10-C name (case-insensitive; `-` accepted for `_`; `elastic` and `jpeg`
    /// accepted as short forms).
    pub fn from_name(name: &str) -> Result<Corruption> {
        let n = name.trim().to_ascii_lowercase().replace('-', "_");
        let n = match n.as_str() {
            "elastic" => "elastic_transform",
            "jpeg" => "jpeg_compression",
            other => other,
        };
        ALL.iter()
            .copied()
            .find(|c| c.name() == n)
            .ok_or_else(|| CorruptError::UnknownName(name.to_string()))
    }

    /// Parse a list of names, or `["all"]` (any entry "all") for every corruption.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Corruption>> {
        if names.iter().any(|x| x.as_ref() == "all") {
            return Ok(ALL.to_vec());
        }
        names
            .iter()
            .map(|x| Corruption::from_name(x.as_ref()))
            .collect()
    }

    /// Whether this is one of the 4 extra (validation) corruptions.
    pub fn is_extra(&self) -> bool {
        matches!(
            self,
            Corruption::SpeckleNoise
                | Corruption::GaussianBlur
                | Corruption::Spatter
                | Corruption::Saturate
        )
    }

    /// Whether the corruption draws random numbers (the others are deterministic functions of the
    /// image).
    pub fn is_random(&self) -> bool {
        !matches!(
            self,
            Corruption::DefocusBlur
                | Corruption::ZoomBlur
                | Corruption::Brightness
                | Corruption::Contrast
                | Corruption::Pixelate
                | Corruption::JpegCompression
                | Corruption::GaussianBlur
                | Corruption::Saturate
        )
    }

    /// The reference parameter tuple for 32×32 images at `severity` (1..=5), as the
    /// `c[severity − 1]` of `make_cifar_c.py` (zoom_blur: the list of zoom factors).
    pub fn params(&self, severity: u32) -> Result<Vec<f64>> {
        if !(1..=5).contains(&severity) {
            return Err(CorruptError::Severity(severity));
        }
        let s = (severity - 1) as usize;
        let one = |t: [f64; 5]| vec![t[s]];
        Ok(match self {
            Corruption::GaussianNoise => one([0.04, 0.06, 0.08, 0.09, 0.10]),
            Corruption::ShotNoise => one([500.0, 250.0, 100.0, 75.0, 50.0]),
            Corruption::ImpulseNoise => one([0.01, 0.02, 0.03, 0.05, 0.07]),
            Corruption::DefocusBlur => {
                [[0.3, 0.4], [0.4, 0.5], [0.5, 0.6], [1.0, 0.2], [1.5, 0.1]][s].to_vec()
            }
            Corruption::GlassBlur => [
                [0.05, 1.0, 1.0],
                [0.25, 1.0, 1.0],
                [0.4, 1.0, 1.0],
                [0.25, 1.0, 2.0],
                [0.4, 1.0, 2.0],
            ][s]
                .to_vec(),
            Corruption::MotionBlur => {
                [[6.0, 1.0], [6.0, 1.5], [6.0, 2.0], [8.0, 2.0], [9.0, 2.5]][s].to_vec()
            }
            Corruption::ZoomBlur => {
                // np.arange(1, end, 0.01): numpy fills start + i·(x₁ − x₀); the float end points
                // give 7, 12, 16, 21, 26 factors (1.06 and 1.11 included, 1.16.. excluded).
                let count = [7usize, 12, 16, 21, 26][s];
                let delta = (1.0f64 + 0.01) - 1.0;
                (0..count).map(|i| 1.0 + i as f64 * delta).collect()
            }
            Corruption::Snow => [
                [0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95],
                [0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9],
                [0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9],
                [0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85],
                [0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8],
            ][s]
                .to_vec(),
            Corruption::Frost => [
                [1.0, 0.2],
                [1.0, 0.3],
                [0.9, 0.4],
                [0.85, 0.4],
                [0.75, 0.45],
            ][s]
                .to_vec(),
            Corruption::Fog => {
                [[0.2, 3.0], [0.5, 3.0], [0.75, 2.5], [1.0, 2.0], [1.5, 1.75]][s].to_vec()
            }
            Corruption::Brightness => one([0.05, 0.1, 0.15, 0.2, 0.3]),
            Corruption::Contrast => one([0.75, 0.5, 0.4, 0.3, 0.15]),
            Corruption::ElasticTransform => {
                let m = 32.0;
                [
                    [m * 0.0, m * 0.0, m * 0.08],
                    [m * 0.05, m * 0.2, m * 0.07],
                    [m * 0.08, m * 0.06, m * 0.06],
                    [m * 0.1, m * 0.04, m * 0.05],
                    [m * 0.1, m * 0.03, m * 0.03],
                ][s]
                    .to_vec()
            }
            Corruption::Pixelate => one([0.95, 0.9, 0.85, 0.75, 0.65]),
            Corruption::JpegCompression => one([80.0, 65.0, 58.0, 50.0, 40.0]),
            Corruption::SpeckleNoise => one([0.06, 0.1, 0.12, 0.16, 0.2]),
            Corruption::GaussianBlur => one([0.4, 0.6, 0.7, 0.8, 1.0]),
            Corruption::Spatter => [
                [0.62, 0.1, 0.7, 0.7, 0.5, 0.0],
                [0.65, 0.1, 0.8, 0.7, 0.5, 0.0],
                [0.65, 0.3, 1.0, 0.69, 0.5, 0.0],
                [0.65, 0.1, 0.7, 0.69, 0.6, 1.0],
                [0.65, 0.1, 0.5, 0.68, 0.6, 1.0],
            ][s]
                .to_vec(),
            Corruption::Saturate => {
                [[0.3, 0.0], [0.1, 0.0], [1.5, 0.0], [2.0, 0.1], [2.5, 0.2]][s].to_vec()
            }
        })
    }

    /// Corrupt one HWC RGB `u8` image of size `h × w` at `severity` (1..=5), drawing randomness
    /// from `stream` (pass a per-image stream, e.g. `Stream::new(seed, "corrupt").sub(i)`).
    /// Returns the corrupted HWC image, truncated to `u8` as the reference stores it.
    pub fn apply(
        &self,
        img: &[u8],
        h: usize,
        w: usize,
        severity: u32,
        stream: &Stream,
    ) -> Result<Vec<u8>> {
        let p = self.params(severity)?;
        self.apply_with_param(img, h, w, &p, stream)
    }

    /// Like [`apply`](Self::apply) with an explicit parameter tuple (same layout as
    /// [`params`](Self::params)), e.g. strength 0 for identity checks.
    pub fn apply_with_param(
        &self,
        img: &[u8],
        h: usize,
        w: usize,
        param: &[f64],
        stream: &Stream,
    ) -> Result<Vec<u8>> {
        check_shape(img, h, w)?;
        let expected = match self {
            Corruption::ZoomBlur => None,
            _ => Some(self.params(1)?.len()),
        };
        if let Some(n) = expected.filter(|&n| param.len() != n) {
            return self.param_err(format!("expected {n} parameters, got {}", param.len()));
        }
        if param.iter().any(|v| !v.is_finite()) {
            return self.param_err("parameters must be finite".into());
        }
        // Bounds that keep kernels and loops finite (far beyond any sensible strength).
        let limits: &[(usize, f64, &str)] = match self {
            Corruption::GaussianBlur | Corruption::GlassBlur => &[(0, 100.0, "sigma")],
            Corruption::ElasticTransform => &[(1, 100.0, "sigma")],
            Corruption::Spatter => &[(2, 100.0, "sigma"), (4, 100.0, "mud sigma")],
            Corruption::MotionBlur => &[(0, 256.0, "radius"), (1, 1000.0, "sigma")],
            Corruption::Snow => &[
                (2, 100.0, "zoom"),
                (4, 256.0, "radius"),
                (5, 1000.0, "sigma"),
            ],
            _ => &[],
        };
        for &(i, max, what) in limits {
            if param[i].abs() > max {
                return self.param_err(format!("{what} = {} exceeds {max}", param[i]));
            }
        }
        if *self == Corruption::ZoomBlur && (param.len() > 1000 || param.iter().any(|&z| z > 100.0))
        {
            return self.param_err("at most 1000 zoom factors, each ≤ 100".into());
        }
        let s = stream.child(self.name());
        let out = kinds::apply(*self, img, h, w, param, &s)?;
        if out.len() != img.len() {
            return Err(CorruptError::Internal(format!(
                "{} returned {} values for an image of {}",
                self.name(),
                out.len(),
                img.len()
            )));
        }
        // Every corruption ends on the 0..255 scale (clipped); a NaN or an out-of-range value is a
        // bug and is reported, not silently saturated.
        if let Some(v) = out.iter().find(|v| !(0.0..=255.0).contains(*v)) {
            return Err(CorruptError::Internal(format!(
                "{} produced {v} outside 0..=255",
                self.name()
            )));
        }
        // numpy's np.uint8(float) on values in 0..=255: truncation toward zero.
        Ok(out.into_iter().map(|v| v as u8).collect())
    }

    fn param_err<T>(&self, msg: String) -> Result<T> {
        Err(CorruptError::Param {
            corruption: self.name(),
            msg,
        })
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Corruption {
    type Err = CorruptError;
    fn from_str(s: &str) -> Result<Self> {
        Corruption::from_name(s)
    }
}

fn check_shape(img: &[u8], h: usize, w: usize) -> Result<()> {
    if h < MIN_SIDE || w < MIN_SIDE {
        return Err(CorruptError::Shape(format!(
            "image is {h}x{w}; corruptions need both sides ≥ {MIN_SIDE}"
        )));
    }
    if img.len() != h * w * 3 {
        return Err(CorruptError::Shape(format!(
            "image buffer has {} bytes, an {h}x{w} RGB image needs {}",
            img.len(),
            h * w * 3
        )));
    }
    Ok(())
}

/// HWC → CHW for one image.
pub fn hwc_to_chw(x: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; x.len()];
    for i in 0..h * w {
        for c in 0..3 {
            out[c * h * w + i] = x[i * 3 + c];
        }
    }
    out
}

/// CHW → HWC for one image.
pub fn chw_to_hwc(x: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; x.len()];
    for i in 0..h * w {
        for c in 0..3 {
            out[i * 3 + c] = x[c * h * w + i];
        }
    }
    out
}

/// The per-image stream used by the batch functions: `Stream::new(seed, "corrupt")`, child
/// `<name>`, child `s<severity>`, sub-stream `index` (the image's index in the dataset).
pub fn image_stream(seed: u64, corruption: Corruption, severity: u32, index: u64) -> Stream {
    Stream::new(seed, "corrupt")
        .child(corruption.name())
        .child(&format!("s{severity}"))
        .sub(index)
}

/// Corrupt `n` images stored NCHW (`u8`, `channels` = 3, or 1 for grayscale: see the module doc,
/// `h × w`), in parallel over images. Image `k` of the buffer uses
/// [`image_stream`]`(seed, corruption, severity, first_index + k)`, so a dataset corrupted in
/// pieces equals the dataset corrupted at once.
#[allow(clippy::too_many_arguments)]
pub fn corrupt_batch_nchw(
    images: &[u8],
    channels: usize,
    h: usize,
    w: usize,
    corruption: Corruption,
    severity: u32,
    seed: u64,
    first_index: u64,
) -> Result<Vec<u8>> {
    corruption.params(severity)?;
    if channels == 1 {
        if images.len().checked_rem(h * w) != Some(0) {
            return Err(CorruptError::Shape(format!(
                "NCHW buffer of {} bytes is not a whole number of 1x{h}x{w} images",
                images.len()
            )));
        }
        // Gray → three equal channels → corrupt → the first channel.
        let rgb: Vec<u8> = images
            .chunks(h * w)
            .flat_map(|g| g.iter().chain(g).chain(g).copied().collect::<Vec<u8>>())
            .collect();
        let out = corrupt_batch_nchw(&rgb, 3, h, w, corruption, severity, seed, first_index)?;
        return Ok(out
            .chunks(3 * h * w)
            .flat_map(|c| c[..h * w].to_vec())
            .collect());
    }
    if channels != 3 {
        return Err(CorruptError::Shape(format!(
            "images with {channels} channels: corruptions take RGB (3) or grayscale (1) images"
        )));
    }
    let per = 3 * h * w;
    if images.len().checked_rem(per) != Some(0) {
        return Err(CorruptError::Shape(format!(
            "NCHW buffer of {} bytes is not a whole number of 3x{h}x{w} images",
            images.len()
        )));
    }
    let mut out = vec![0u8; images.len()];
    out.par_chunks_mut(per)
        .zip(images.par_chunks(per))
        .enumerate()
        .try_for_each(|(k, (dst, src))| -> Result<()> {
            let hwc = chw_to_hwc(src, h, w);
            let s = image_stream(seed, corruption, severity, first_index + k as u64);
            let y = corruption.apply(&hwc, h, w, severity, &s)?;
            dst.copy_from_slice(&hwc_to_chw(&y, h, w));
            Ok(())
        })?;
    Ok(out)
}

/// Corrupt a CIFAR-style dataset: `images` is NCHW `u8` with 3×32×32 per image and one label per
/// image (the labels only fix and check `n`). Returns the corrupted images in the same layout.
pub fn corrupt_dataset(
    images: &[u8],
    labels: &[u8],
    corruption: Corruption,
    severity: u32,
    seed: u64,
) -> Result<Vec<u8>> {
    if images.len() != labels.len() * 3072 {
        return Err(CorruptError::Shape(format!(
            "{} labels need {} image bytes (3x32x32 each), got {}",
            labels.len(),
            labels.len() * 3072,
            images.len()
        )));
    }
    corrupt_batch_nchw(images, 3, 32, 32, corruption, severity, seed, 0)
}

/// Write the official CIFAR-10 binary layout: per record 1 label byte then 3072 pixel bytes
/// (1024 R, 1024 G, 1024 B, row-major 32×32), i.e. NCHW images interleaved with labels.
pub fn write_cifar_binary(path: &Path, labels: &[u8], images_nchw: &[u8]) -> Result<()> {
    if images_nchw.len() != labels.len() * 3072 {
        return Err(CorruptError::Shape(format!(
            "{} labels need {} image bytes (3x32x32 each), got {}",
            labels.len(),
            labels.len() * 3072,
            images_nchw.len()
        )));
    }
    let io = |source| CorruptError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::create(path).map_err(io)?;
    let mut f = std::io::BufWriter::new(f);
    for (k, &l) in labels.iter().enumerate() {
        f.write_all(&[l]).map_err(io)?;
        f.write_all(&images_nchw[k * 3072..(k + 1) * 3072])
            .map_err(io)?;
    }
    f.flush().map_err(io)?;
    Ok(())
}

/// Render one HWC image under all 19 corruptions × 5 severities: 19 rows (reference order), 6
/// columns (clean, severity 1..5), each tile upscaled by `scale` (nearest), 2-pixel white gaps.
/// Returns (RGB buffer, width, height).
pub fn corruption_grid(
    img: &[u8],
    h: usize,
    w: usize,
    seed: u64,
    scale: usize,
) -> Result<(Vec<u8>, usize, usize)> {
    check_shape(img, h, w)?;
    let scale = scale.max(1);
    let gap = 2;
    let (th, tw) = (h * scale, w * scale);
    let gw = 6 * tw + 7 * gap;
    let gh = 19 * th + 20 * gap;
    let mut out = vec![255u8; gw * gh * 3];
    for (r, c) in Corruption::all().iter().enumerate() {
        for col in 0..6 {
            let tile = if col == 0 {
                img.to_vec()
            } else {
                c.apply(
                    img,
                    h,
                    w,
                    col as u32,
                    &image_stream(seed, *c, col as u32, 0),
                )?
            };
            let (oy, ox) = (gap + r * (th + gap), gap + col * (tw + gap));
            for i in 0..th {
                for j in 0..tw {
                    let s = ((i / scale) * w + j / scale) * 3;
                    let d = ((oy + i) * gw + ox + j) * 3;
                    out[d..d + 3].copy_from_slice(&tile[s..s + 3]);
                }
            }
        }
    }
    Ok((out, gw, gh))
}

/// Write [`corruption_grid`] as a PNG file.
pub fn write_corruption_grid_png(
    path: &Path,
    img: &[u8],
    h: usize,
    w: usize,
    seed: u64,
    scale: usize,
) -> Result<()> {
    let (buf, gw, gh) = corruption_grid(img, h, w, seed, scale)?;
    image::save_buffer(
        path,
        &buf,
        gw as u32,
        gh as u32,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| CorruptError::Codec(format!("writing {}: {e}", path.display())))
}

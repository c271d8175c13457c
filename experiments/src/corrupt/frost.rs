//! Frost as the reference makes it: a crop of one of the frost photographs blended over the image.
//!
//! `make_cifar_c.py` `frost`: `idx = randint(5)` picks one of `frost1.png … frost5.jpg`
//! (`frost6.jpg` is listed but never drawn); `cv2.imread` (BGR, the PNGs' alpha dropped), then
//! `cv2.resize(fx=fy=0.2)` with bilinear interpolation, a random 32×32 crop starting at row
//! `randint(0, H′ − 32)` and column `randint(0, W′ − 32)` (upper bounds exclusive), BGR→RGB, and
//! `clip(c₀·img + c₁·frost, 0, 255)` on the 0..255 scale.
//!
//! With the factor 0.2 OpenCV's bilinear source coordinate `(d + 0.5)·5 − 0.5 = 5d + 2` is an
//! integer, so the shrunk photograph is exactly the pixels `(5i + 2, 5j + 2)` of the original
//! (sizes `round(H/5) × round(W/5)`): no interpolation arithmetic is involved. The photographs
//! (vendored from the `imagecorruptions` package, Apache-2.0, `experiments/assets/frost/`) are
//! decoded with the same libjpeg-turbo decoding PIL and OpenCV use, and the PNG alpha is dropped
//! as OpenCV's `IMREAD_COLOR` does.
//!
//! Images up to 62×104 pixels (every 0.2-shrunk photograph leaves room for a crop) are treated
//! exactly as the reference treats 32×32 ones. Larger images (an extension; the reference is for
//! CIFAR) sample the photographs with a smaller stride `s` (pixels `(s·i + ⌊s/2⌋, s·j + ⌊s/2⌋)`),
//! the largest that leaves room, down to the full resolution; beyond 314×526 there is no
//! crop and the corruption is an error.

use super::{CorruptError, Result};
use sim::rng::Stream;
use std::sync::OnceLock;

/// The photographs the reference draws from, in its order (`frost1.png` … `frost5.jpg`).
const PHOTOS: [(&str, &[u8]); 5] = [
    (
        "frost1.png",
        include_bytes!("../../assets/frost/frost1.png"),
    ),
    (
        "frost2.png",
        include_bytes!("../../assets/frost/frost2.png"),
    ),
    (
        "frost3.png",
        include_bytes!("../../assets/frost/frost3.png"),
    ),
    (
        "frost4.jpg",
        include_bytes!("../../assets/frost/frost4.jpg"),
    ),
    (
        "frost5.jpg",
        include_bytes!("../../assets/frost/frost5.jpg"),
    ),
];

/// Number of photographs drawn from (`np.random.randint(5)`).
pub const DRAWN: usize = PHOTOS.len();

/// The reference's shrink factor 0.2, as a stride.
pub const REFERENCE_STRIDE: usize = 5;

/// A decoded photograph, RGB interleaved.
struct Photo {
    h: usize,
    w: usize,
    rgb: Vec<u8>,
}

fn decode(name: &str, bytes: &[u8]) -> std::result::Result<Photo, String> {
    if name.ends_with(".png") {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
            .map_err(|e| format!("{name}: PNG decode failed: {e}"))?;
        if !matches!(
            img.color(),
            image::ColorType::Rgb8 | image::ColorType::Rgba8
        ) {
            return Err(format!(
                "{name}: expected 8-bit RGB(A), got {:?}",
                img.color()
            ));
        }
        // OpenCV's IMREAD_COLOR strips the alpha channel (no compositing).
        let rgba = img.to_rgba8();
        let (w, h) = (rgba.width() as usize, rgba.height() as usize);
        let rgb = rgba
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Ok(Photo { h, w, rgb })
    } else {
        let (w, h, rgb) =
            crate::data::folder::decode_image(bytes).map_err(|e| format!("{name}: {e}"))?;
        Ok(Photo { h, w, rgb })
    }
}

fn photos() -> Result<&'static [Photo]> {
    static CELL: OnceLock<std::result::Result<Vec<Photo>, String>> = OnceLock::new();
    CELL.get_or_init(|| PHOTOS.iter().map(|(n, b)| decode(n, b)).collect())
        .as_deref()
        .map_err(|e| CorruptError::Codec(format!("frost photograph {e}")))
}

/// Rows (or columns) of a side of `n` pixels sampled with `stride`: `⌈(n − ⌊s/2⌋)/s⌉`
/// (`round(n/5)` for the reference's stride 5, as `cv2.resize` sizes its output).
fn shrunk(n: usize, stride: usize) -> usize {
    (n - stride / 2).div_ceil(stride)
}

/// The stride for an `h × w` image: 5 (the reference) when every photograph, shrunk, is larger
/// than the image in both directions, else the largest smaller one that is; an error when even
/// the full-resolution photographs are too small.
pub fn stride(h: usize, w: usize) -> Result<usize> {
    let ph = photos()?;
    (1..=REFERENCE_STRIDE)
        .rev()
        .find(|&s| ph.iter().all(|p| shrunk(p.h, s) > h && shrunk(p.w, s) > w))
        .ok_or_else(|| {
            CorruptError::Shape(format!(
                "frost: a {h}x{w} image is larger than the frost photographs allow (crops of at \
                 most {}x{})",
                ph.iter().map(|p| p.h).min().unwrap_or(0) - 1,
                ph.iter().map(|p| p.w).min().unwrap_or(0) - 1
            ))
        })
}

/// Size `(rows, columns)` of photograph `idx` (0-based) shrunk for an `h × w` image.
pub fn shrunk_size(idx: usize, h: usize, w: usize) -> Result<(usize, usize)> {
    let s = stride(h, w)?;
    let p = photos()?
        .get(idx)
        .ok_or_else(|| CorruptError::Shape(format!("frost photograph index {idx} >= {DRAWN}")))?;
    Ok((shrunk(p.h, s), shrunk(p.w, s)))
}

/// The reference's draws from stream `s`: photograph `randint(5)`, crop row
/// `randint(0, H′ − h)`, crop column `randint(0, W′ − w)`.
pub fn draws(h: usize, w: usize, s: &Stream) -> Result<(usize, usize, usize)> {
    let idx = s.below(0, DRAWN as u64) as usize;
    let (sh, sw) = shrunk_size(idx, h, w)?;
    let top = s.below(1, (sh - h) as u64) as usize;
    let left = s.below(2, (sw - w) as u64) as usize;
    Ok((idx, top, left))
}

/// The frost layer (HWC RGB, 0..255) for an `h × w` image: photograph `idx`, shrunk, cropped at
/// row `top`, column `left`.
pub fn frost_layer(h: usize, w: usize, idx: usize, top: usize, left: usize) -> Result<Vec<u8>> {
    let s = stride(h, w)?;
    let (sh, sw) = shrunk_size(idx, h, w)?;
    if top + h > sh || left + w > sw {
        return Err(CorruptError::Shape(format!(
            "frost crop {h}x{w} at ({top}, {left}) leaves the {sh}x{sw} shrunk photograph {}",
            idx + 1
        )));
    }
    let p = &photos()?[idx];
    let off = s / 2;
    let mut out = Vec::with_capacity(h * w * 3);
    for i in 0..h {
        let y = (top + i) * s + off;
        for j in 0..w {
            let x = (left + j) * s + off;
            let k = (y * p.w + x) * 3;
            out.extend_from_slice(&p.rgb[k..k + 3]);
        }
    }
    Ok(out)
}

/// Frost with the draws given: `clip(p₀·img + p₁·frost_layer(idx, top, left), 0, 255)`.
pub fn frost_with(
    img: &[u8],
    h: usize,
    w: usize,
    p: &[f64],
    idx: usize,
    top: usize,
    left: usize,
) -> Result<Vec<f64>> {
    let layer = frost_layer(h, w, idx, top, left)?;
    Ok(img
        .iter()
        .zip(layer)
        .map(|(&x, f)| (p[0] * x as f64 + p[1] * f as f64).clamp(0.0, 255.0))
        .collect())
}

//! The JPEG round trip of `jpeg_compression`, as the reference makes it: PIL's
//! `img.save(f, 'JPEG', quality=q)` and `Image.open(f)`.
//!
//! PIL hands the image to libjpeg(-turbo) with its defaults: `jpeg_set_defaults` (JFIF, YCbCr
//! with libjpeg's fixed-point RGB→YCbCr conversion, 4:2:0 chroma subsampling by averaging 2×2
//! blocks, the integer "slow" DCT, baseline Huffman coding) and `jpeg_set_quality(q)` (the Annex K
//! tables scaled for q). The encoder here is libjpeg-turbo's, as vendored in the `mozjpeg` crate,
//! switched to those settings (`JCP_FASTEST` = libjpeg v6 defaults, no trellis quantization, no
//! mozjpeg tables), with 4:2:0 set explicitly. The decoder is the one the folder loader uses, which
//! decodes exactly as PIL does (ISLOW IDCT, fancy upsampling).

use super::{CorruptError, Result};

/// Encode the HWC RGB image at `quality` (1..=100) as PIL does by default, and decode it again.
pub(super) fn roundtrip(img: &[u8], h: usize, w: usize, quality: u8) -> Result<Vec<u8>> {
    let bytes = encode_pil_default(img, h, w, quality)?;
    let (dw, dh, px) = crate::data::folder::decode_image(&bytes).map_err(CorruptError::Codec)?;
    if (dw, dh) != (w, h) {
        return Err(CorruptError::Codec(format!(
            "JPEG round trip of a {w}x{h} image decoded as {dw}x{dh}"
        )));
    }
    Ok(px)
}

/// The JPEG file PIL's default encoder writes for the HWC RGB image at `quality` (the same
/// quantized coefficients; header details such as the density may differ).
pub fn encode_pil_default(img: &[u8], h: usize, w: usize, quality: u8) -> Result<Vec<u8>> {
    if img.len() != h * w * 3 || h == 0 || w == 0 {
        return Err(CorruptError::Shape(format!(
            "JPEG encode: {} bytes is not a {w}x{h} RGB image",
            img.len()
        )));
    }
    if !(1..=100).contains(&quality) {
        return Err(CorruptError::Codec(format!(
            "JPEG quality {quality} is outside 1..=100"
        )));
    }
    let run = || -> std::io::Result<Vec<u8>> {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        // libjpeg v6 defaults (what libjpeg-turbo, hence PIL, uses), then PIL's settings.
        c.set_fastest_defaults();
        c.set_size(w, h);
        c.set_quality(quality as f32);
        c.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
        c.set_optimize_coding(false);
        let mut s = c.start_compress(Vec::new())?;
        s.write_scanlines(img)?;
        s.finish()
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(CorruptError::Codec(format!("JPEG encode: {e}"))),
        Err(p) => Err(CorruptError::Codec(format!(
            "JPEG encode failed: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".into())
        ))),
    }
}

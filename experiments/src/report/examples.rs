//! Adversarial example grids: one attack's ([`write_grid`]: one row per image, columns clean /
//! adversarial / perturbation, the model's prediction under the clean and adversarial images, and
//! the perturbation amplified around mid-gray with the amplification written in the caption), and
//! several models' at the same ε (the paper's Figure 5, [`write_models_grid`]: one row per image,
//! the clean image, then each model's adversarial image with its prediction).
//!
//! Images are NCHW in [0, 1], 1 channel (drawn gray) or 3 (RGB). Each image is upscaled by an
//! integer factor with nearest neighbour, so a cell's pixels are exactly `round(255·x)` of the
//! image it shows.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use plotters::prelude::*;
use sim::Tensor;

use crate::classifier::Classifier;

/// One image: clean and adversarial pixels (C·H·W), true label, predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Clean image, [0, 1].
    pub clean: Vec<f32>,
    /// Adversarial image.
    pub adv: Vec<f32>,
    /// True label.
    pub label: usize,
    /// Prediction on the clean image.
    pub pred_clean: usize,
    /// Prediction on the adversarial image.
    pub pred_adv: usize,
}

/// Examples kept while attacking a data set (the first images in loader order).
#[derive(Debug, Clone, PartialEq)]
pub struct Examples {
    /// Image shape [C, H, W].
    pub shape: [usize; 3],
    /// The examples.
    pub items: Vec<Example>,
}

impl Examples {
    /// No examples yet, of images shaped `shape`.
    pub fn new(shape: [usize; 3]) -> Self {
        Examples {
            shape,
            items: Vec::new(),
        }
    }

    /// Keep the first images of a batch (clean `x`, adversarial `x_adv`, labels `y`) until `keep`
    /// are held, with `clf`'s predictions on both (one extra forward pass over the kept images,
    /// not counted as attack queries).
    pub fn push_batch(
        &mut self,
        clf: &dyn Classifier,
        x: &Tensor,
        x_adv: &Tensor,
        y: &[usize],
        keep: usize,
    ) -> Result<()> {
        let k = keep.saturating_sub(self.items.len()).min(y.len());
        if k == 0 {
            return Ok(());
        }
        ensure!(
            x.shape() == x_adv.shape() && x.shape()[1..] == self.shape[..],
            "examples: clean {:?} and adversarial {:?} batches must be [N, {:?}]",
            x.shape(),
            x_adv.shape(),
            self.shape
        );
        let take = |t: &Tensor| -> Tensor {
            t.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..k))
                .to_owned()
        };
        let (xc, xa) = (take(x), take(x_adv));
        let pc = ep::train::argmax_rows(&clf.logits(&xc)?);
        let pa = ep::train::argmax_rows(&clf.logits(&xa)?);
        let d: usize = self.shape.iter().product();
        let (cs, as_) = (
            xc.as_standard_layout()
                .iter()
                .copied()
                .collect::<Vec<f32>>(),
            xa.as_standard_layout()
                .iter()
                .copied()
                .collect::<Vec<f32>>(),
        );
        for i in 0..k {
            self.items.push(Example {
                clean: cs[i * d..(i + 1) * d].to_vec(),
                adv: as_[i * d..(i + 1) * d].to_vec(),
                label: y[i],
                pred_clean: pc[i],
                pred_adv: pa[i],
            });
        }
        Ok(())
    }

    /// The amplification of the perturbation column: 0.5 / max |x_adv − x| over all examples
    /// (the largest change reaches black or white), rounded to 3 significant digits (a change that
    /// rounding pushes past the range end is clipped); 1 when
    /// nothing changed.
    pub fn amplification(&self) -> f32 {
        let m = self
            .items
            .iter()
            .flat_map(|e| e.clean.iter().zip(&e.adv).map(|(a, b)| (b - a).abs()))
            .fold(0.0f32, f32::max);
        if !(m > 0.0 && m.is_finite()) {
            return 1.0;
        }
        let a = 0.5 / m as f64;
        let mag = 10f64.powi(a.log10().floor() as i32 - 2);
        ((a / mag).round() * mag) as f32
    }
}

/// Pixel geometry of an examples grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    /// Integer upscaling of each image.
    pub scale: usize,
    /// Image width and height in the grid (W·scale, H·scale).
    pub cell: (usize, usize),
    /// Total width and height.
    pub size: (usize, usize),
}

/// Margin around and between cells.
pub const MARGIN: usize = 6;
/// Height of the column titles.
pub const HEADER: usize = 20;
/// Height of the text strip under each cell.
pub const LABEL: usize = 16;
/// Height of the caption at the bottom.
pub const CAPTION: usize = 36;
/// Minimum width (room for the caption).
pub const MIN_WIDTH: usize = 460;

impl GridLayout {
    /// The layout of `rows` images shaped [C, H, W]: upscaled so that the larger side is about
    /// 128 pixels (an integer factor ≥ 1).
    pub fn new(shape: [usize; 3], rows: usize) -> Self {
        Self::with_columns(shape, rows, 3)
    }

    /// The layout of `rows` × `cols` images shaped [C, H, W] (see [`GridLayout::new`]).
    pub fn with_columns(shape: [usize; 3], rows: usize, cols: usize) -> Self {
        let [_, h, w] = shape;
        let scale = (128 / h.max(w).max(1)).max(1);
        let cell = (w * scale, h * scale);
        let width = (cols * cell.0 + (cols + 1) * MARGIN).max(MIN_WIDTH);
        let height = MARGIN + HEADER + rows * (cell.1 + LABEL + MARGIN) + CAPTION;
        GridLayout {
            scale,
            cell,
            size: (width, height),
        }
    }

    /// Top-left pixel of the image in row `row`, column `col` (0 clean, 1 adversarial, 2
    /// perturbation).
    pub fn origin(&self, row: usize, col: usize) -> (usize, usize) {
        (
            MARGIN + col * (self.cell.0 + MARGIN),
            MARGIN + HEADER + row * (self.cell.1 + LABEL + MARGIN),
        )
    }
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn class_name(classes: &[String], k: usize) -> String {
    classes.get(k).cloned().unwrap_or_else(|| k.to_string())
}

/// Draw an image of `shape` [C, H, W] (`img(channel, pixel)` in [0, 1]; one channel drawn gray)
/// upscaled by `lay.scale` at pixel `(x0, y0)` of the RGB buffer `buf` of width `lay.size.0`.
fn blit(
    buf: &mut [u8],
    lay: &GridLayout,
    shape: [usize; 3],
    (x0, y0): (usize, usize),
    img: impl Fn(usize, usize) -> f32,
) {
    let [c, h, w] = shape;
    let (s, gw) = (lay.scale, lay.size.0);
    for y in 0..h * s {
        for x in 0..w * s {
            let p = (y / s) * w + x / s;
            let o = ((y0 + y) * gw + x0 + x) * 3;
            for k in 0..3 {
                buf[o + k] = to_u8(img(if c == 1 { 0 } else { k }, p));
            }
        }
    }
}

/// Draw the texts of a grid (`texts`: column titles and labels, on the buffer's drawing area),
/// its two caption lines, and write it to `path` as PNG.
fn finish_grid(
    path: &Path,
    mut buf: Vec<u8>,
    lay: &GridLayout,
    caption: [&str; 2],
    texts: impl FnOnce(
        &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        &TextStyle<'_>,
        &TextStyle<'_>,
    ) -> Result<()>,
) -> Result<()> {
    let (gw, gh) = lay.size;
    super::plot::register_font();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (gw as u32, gh as u32)).into_drawing_area();
        let err = super::plot::plot_error;
        let small = ("sans-serif", 11).into_font().color(&BLACK);
        let head = ("sans-serif", 13).into_font().color(&BLACK);
        texts(&root, &small, &head)?;
        let y = (gh - CAPTION + 4) as i32;
        for (i, line) in caption.iter().enumerate() {
            root.draw_text(line, &small, (MARGIN as i32, y + 15 * i as i32))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let png = super::plot::png_bytes(gw as u32, gh as u32, buf)?;
    crate::files::write_atomic(path, &png)
        .with_context(|| format!("writing the examples grid {}", path.display()))
}

/// Write the examples grid to `path` (PNG): rows = images; columns = clean (with the prediction
/// and the true label under it), adversarial (with its prediction), perturbation
/// `0.5 + A·(x_adv − x)` clipped to [0, 1] (with its L∞ and L2 norms); `title` and the
/// amplification A in the caption. `classes` names the labels (numbers where missing).
pub fn write_grid(
    path: &Path,
    ex: &Examples,
    classes: &[String],
    title: &str,
) -> Result<GridLayout> {
    let [c, h, w] = ex.shape;
    ensure!(
        c == 1 || c == 3,
        "examples: cannot draw images with {c} channels (1 or 3)"
    );
    ensure!(!ex.items.is_empty(), "examples: no image to draw");
    let lay = GridLayout::new(ex.shape, ex.items.len());
    let amp = ex.amplification();
    let (gw, gh) = lay.size;
    let mut buf = vec![255u8; gw * gh * 3];
    let hw = h * w;
    for (r, e) in ex.items.iter().enumerate() {
        blit(&mut buf, &lay, ex.shape, lay.origin(r, 0), |k, p| {
            e.clean[k * hw + p]
        });
        blit(&mut buf, &lay, ex.shape, lay.origin(r, 1), |k, p| {
            e.adv[k * hw + p]
        });
        blit(&mut buf, &lay, ex.shape, lay.origin(r, 2), |k, p| {
            0.5 + amp * (e.adv[k * hw + p] - e.clean[k * hw + p])
        });
    }
    let note = format!("perturbation shown as 0.5 + A·(x_adv − x) clipped to [0, 1], A = {amp}");
    finish_grid(path, buf, &lay, [title, &note], |root, small, head| {
        let err = super::plot::plot_error;
        for (col, t) in ["clean", "adversarial", "perturbation ×A"]
            .iter()
            .enumerate()
        {
            let (x0, _) = lay.origin(0, col);
            root.draw_text(t, head, (x0 as i32, (MARGIN + 2) as i32))
                .map_err(err)?;
        }
        for (r, e) in ex.items.iter().enumerate() {
            let y = (lay.origin(r, 0).1 + lay.cell.1 + 2) as i32;
            let pc = class_name(classes, e.pred_clean);
            let clean_txt = if e.pred_clean == e.label {
                pc
            } else {
                format!("{pc} (true {})", class_name(classes, e.label))
            };
            let adv_txt = class_name(classes, e.pred_adv);
            let (linf, l2) = e
                .clean
                .iter()
                .zip(&e.adv)
                .fold((0.0f32, 0.0f64), |(m, s), (a, b)| {
                    let d = b - a;
                    (m.max(d.abs()), s + (d as f64) * (d as f64))
                });
            let norm_txt = format!("L∞ {linf:.4}  L2 {:.3}", l2.sqrt());
            for (col, t) in [clean_txt, adv_txt, norm_txt].iter().enumerate() {
                let x = lay.origin(r, col).0 as i32;
                root.draw_text(t, small, (x, y)).map_err(err)?;
            }
        }
        Ok(())
    })?;
    Ok(lay)
}

/// Write the grid of several models attacked at the same strength to `path` (PNG): row i is image
/// i (the same images, in the same order, for every model): its clean image with the true label,
/// then per model (`models`: name and its examples, each holding the rows' clean images) the
/// adversarial image with the model's prediction; `title` in the caption.
pub fn write_models_grid(
    path: &Path,
    models: &[(String, Examples)],
    classes: &[String],
    title: &str,
) -> Result<GridLayout> {
    ensure!(!models.is_empty(), "examples: no model to draw");
    let first = &models[0].1;
    let [c, h, w] = first.shape;
    ensure!(
        c == 1 || c == 3,
        "examples: cannot draw images with {c} channels (1 or 3)"
    );
    let rows = first.items.len();
    ensure!(rows > 0, "examples: no image to draw");
    for (name, ex) in models {
        ensure!(
            ex.shape == first.shape
                && ex.items.len() == rows
                && ex
                    .items
                    .iter()
                    .zip(&first.items)
                    .all(|(a, b)| a.clean == b.clean),
            "examples: model {name} was attacked on other images than {}",
            models[0].0
        );
    }
    let cols = 1 + models.len();
    let lay = GridLayout::with_columns(first.shape, rows, cols);
    let (gw, gh) = lay.size;
    let mut buf = vec![255u8; gw * gh * 3];
    let hw = h * w;
    for r in 0..rows {
        let clean = &first.items[r].clean;
        blit(&mut buf, &lay, first.shape, lay.origin(r, 0), |k, p| {
            clean[k * hw + p]
        });
        for (m, (_, ex)) in models.iter().enumerate() {
            let adv = &ex.items[r].adv;
            blit(&mut buf, &lay, first.shape, lay.origin(r, 1 + m), |k, p| {
                adv[k * hw + p]
            });
        }
    }
    let note = "under each adversarial image: the model's prediction (✗: wrong)";
    finish_grid(path, buf, &lay, [title, note], |root, small, head| {
        let err = super::plot::plot_error;
        let names = std::iter::once("clean").chain(models.iter().map(|(n, _)| n.as_str()));
        for (col, t) in names.enumerate() {
            let (x0, _) = lay.origin(0, col);
            root.draw_text(t, head, (x0 as i32, (MARGIN + 2) as i32))
                .map_err(err)?;
        }
        for r in 0..rows {
            let y = (lay.origin(r, 0).1 + lay.cell.1 + 2) as i32;
            let label = class_name(classes, first.items[r].label);
            root.draw_text(&label, small, (lay.origin(r, 0).0 as i32, y))
                .map_err(err)?;
            for (m, (_, ex)) in models.iter().enumerate() {
                let e = &ex.items[r];
                let t = format!(
                    "{}{}",
                    class_name(classes, e.pred_adv),
                    if e.pred_adv == e.label { "" } else { " ✗" }
                );
                root.draw_text(&t, small, (lay.origin(r, 1 + m).0 as i32, y))
                    .map_err(err)?;
            }
        }
        Ok(())
    })?;
    Ok(lay)
}

/// The file an attack's examples go to: `dir/examples_<attack>_eps<strength>.png`.
pub fn examples_path(dir: &Path, attack: &str, eps_text: &str) -> std::path::PathBuf {
    dir.join(format!(
        "examples_{}_eps{}.png",
        super::tables::slug(attack),
        super::tables::slug(eps_text)
    ))
}

/// Write the grid of attack `attack` (CLI name; `full_name` with its settings goes in the
/// caption) at strength `eps_text` into the folder of `results` (a results file, or a folder when
/// it has no extension); prints and returns the path.
pub fn save(
    results: &Path,
    attack: &str,
    eps_text: &str,
    full_name: &str,
    ex: &Examples,
    classes: &[String],
) -> Result<std::path::PathBuf> {
    let dir = if results.extension().is_none() {
        results.to_path_buf()
    } else {
        match results.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = examples_path(&dir, attack, eps_text);
    write_grid(&path, ex, classes, &format!("{full_name} (ε = {eps_text})"))
        .with_context(|| format!("writing examples {}", path.display()))?;
    println!("examples: {}", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(c: usize, n: usize, delta: f32) -> Examples {
        let mut e = Examples::new([c, 5, 4]);
        for i in 0..n {
            let clean: Vec<f32> = (0..c * 20)
                .map(|j| ((i * 37 + j * 11) % 256) as f32 / 255.0)
                .collect();
            let adv = clean
                .iter()
                .enumerate()
                .map(|(j, v)| v + if j % 2 == 0 { delta } else { -delta })
                .collect();
            e.items.push(Example {
                clean,
                adv,
                label: i % 3,
                pred_clean: i % 3,
                pred_adv: (i + 1) % 3,
            });
        }
        e
    }

    #[test]
    fn amplification_maps_the_largest_change_to_the_range_end() {
        // max |δ| = 0.02 → 0.5/0.02 = 25.
        assert_eq!(ex(1, 2, 0.02).amplification(), 25.0);
        // 0.5/0.03 = 16.666… → 3 significant digits: 16.7.
        assert!((ex(1, 2, 0.03).amplification() - 16.7).abs() < 1e-4);
        assert_eq!(ex(1, 2, 0.0).amplification(), 1.0);
    }

    #[test]
    fn grid_cells_hold_the_exact_pixels() {
        for c in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("g.png");
            let e = ex(c, 3, 0.02);
            let lay = write_grid(&p, &e, &["a".into(), "b".into(), "c".into()], "test").unwrap();
            // 5x4 images: scale 128/5 = 25, cells 100 x 125; width max(3·100 + 24, 460) = 460;
            // height 6 + 20 + 3·(125 + 16 + 6) + 36 = 503.
            assert_eq!(lay.scale, 25);
            assert_eq!(lay.size, (460, 503));
            let img = image::open(&p).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (460, 503));
            for (r, item) in e.items.iter().enumerate() {
                for (col, want) in [
                    // clean, adversarial, perturbation 0.5 ± 25·0.02 = 1 or 0.
                    Box::new(|k: usize, p: usize| item.clean[k * 20 + p])
                        as Box<dyn Fn(usize, usize) -> f32>,
                    Box::new(|k: usize, p: usize| item.adv[k * 20 + p]),
                    Box::new(|k: usize, p: usize| {
                        if (k * 20 + p).is_multiple_of(2) {
                            1.0
                        } else {
                            0.0
                        }
                    }),
                ]
                .iter()
                .enumerate()
                {
                    let (x0, y0) = lay.origin(r, col);
                    for y in 0..125 {
                        for x in 0..100 {
                            let px = img.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
                            let p = (y / 25) * 4 + x / 25;
                            for (k, &got) in px.iter().enumerate() {
                                let ch = if c == 1 { 0 } else { k };
                                let v = (want(ch, p).clamp(0.0, 1.0) * 255.0).round() as u8;
                                assert_eq!(got, v, "c={c} row {r} col {col} ({x},{y}) ch {k}");
                            }
                        }
                    }
                }
            }
            // Text was drawn: the caption strip is not all white.
            let dark = (0..460)
                .flat_map(|x| (503 - CAPTION..503).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x as u32, y as u32).0[0] < 128)
                .count();
            assert!(dark > 50, "caption text missing ({dark} dark pixels)");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = ex(1, 1, 0.1);
        e.shape = [2, 5, 4];
        let err = write_grid(&dir.path().join("x.png"), &e, &[], "t").unwrap_err();
        assert!(err.to_string().contains("2 channels"), "{err}");
        let e = Examples::new([1, 5, 4]);
        let err = write_grid(&dir.path().join("x.png"), &e, &[], "t").unwrap_err();
        assert!(err.to_string().contains("no image"), "{err}");
    }

    #[test]
    fn a_models_grid_shows_each_models_adversarial_image_of_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.png");
        let (a, b) = (ex(3, 2, 0.02), ex(3, 2, 0.05));
        let models = vec![("A".to_string(), a.clone()), ("B".to_string(), b.clone())];
        let lay = write_models_grid(&p, &models, &[], "t").unwrap();
        assert_eq!(lay, GridLayout::with_columns([3, 5, 4], 2, 3));
        let img = image::open(&p).unwrap().to_rgb8();
        for r in 0..2 {
            for (col, want) in [
                (0, &a.items[r].clean),
                (1, &a.items[r].adv),
                (2, &b.items[r].adv),
            ] {
                let (x0, y0) = lay.origin(r, col);
                for (y, x) in [(0, 0), (60, 40), (124, 99)] {
                    let px = img.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
                    let p = (y / 25) * 4 + x / 25;
                    for (k, &got) in px.iter().enumerate() {
                        let v = (want[k * 20 + p].clamp(0.0, 1.0) * 255.0).round() as u8;
                        assert_eq!(got, v, "row {r} col {col} ({x},{y}) ch {k}");
                    }
                }
            }
        }
        // Models attacked on other images are refused.
        let other = vec![("A".to_string(), a), ("C".to_string(), ex(3, 3, 0.02))];
        let e = write_models_grid(&p, &other, &[], "t").unwrap_err();
        assert!(e.to_string().contains("other images"), "{e}");
    }
}

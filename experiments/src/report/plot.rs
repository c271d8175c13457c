//! Line charts (PNG or SVG by the file extension) with an embedded font, so plots come out the same
//! on every machine and need no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result};
use plotters::prelude::*;

static FONT: Once = Once::new();

pub(crate) fn register_font() {
    FONT.call_once(|| {
        // DejaVu Sans (Bitstream Vera license, see assets/DejaVuSans.LICENSE).
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        );
    });
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// Draw `series` as lines into `path` (`.png` or `.svg`).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    save_chart(
        path,
        |r| draw(r, title, x_label, y_label, series, y_range),
        |r| draw(r, title, x_label, y_label, series, y_range),
    )
}

/// The size of every chart, in pixels.
const CHART_SIZE: (u32, u32) = (800, 500);

/// Render a chart in memory (SVG when `path` ends in `.svg`, else PNG; `png` and `svg` draw the
/// same chart on the two backends) and write it to `path` atomically, so that a failed write is an
/// I/O error naming the file and a reader never sees half a plot.
fn save_chart(
    path: &Path,
    png: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
    svg: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let (w, h) = CHART_SIZE;
    let bytes = if path.extension().is_some_and(|e| e == "svg") {
        let mut text = String::new();
        svg(SVGBackend::with_string(&mut text, (w, h)).into_drawing_area())
            .with_context(|| format!("drawing {}", path.display()))?;
        text.into_bytes()
    } else {
        let mut buf = vec![0u8; w as usize * h as usize * 3];
        png(BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area())
            .with_context(|| format!("drawing {}", path.display()))?;
        png_bytes(w, h, buf)?
    };
    crate::files::write_atomic(path, &bytes)
        .with_context(|| format!("writing the plot {}", path.display()))
}

/// An RGB pixel buffer (`w`×`h`, row-major) encoded as PNG.
pub(crate) fn png_bytes(w: u32, h: u32, rgb: Vec<u8>) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(w, h, rgb).context("image buffer size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .context("encoding PNG")?;
    Ok(out.into_inner())
}

/// A tick label: at most 4 decimals, trailing zeros dropped ("0.46", not "0.46000000000000001").
pub(crate) fn tick(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// A plotting error as a sentence (the backend's own message, e.g. the I/O error of writing the
/// file), not a Debug dump of plotters' error enums.
pub(crate) fn plot_error<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    match e {
        DrawingAreaErrorKind::BackendError(b) => anyhow::anyhow!("plot: {b}"),
        other => anyhow::anyhow!("plot: {other}"),
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = plot_error::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if let Some((a, b)) = y_range {
        (y0, y1) = (a, b);
    } else if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        // Markers where the points are few enough to be told apart (measured strengths, levels).
        if s.points.len() <= 40 {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
        }
    }
    // The legend goes to the upper corner when the curves end in the lower half, else the lower.
    let ends: Vec<f64> = series
        .iter()
        .filter_map(|s| s.points.last().map(|p| p.1))
        .collect();
    let end_mean = ends.iter().sum::<f64>() / ends.len().max(1) as f64;
    let corner = if end_mean < 0.5 * (y0 + y1) {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::LowerRight
    };
    if series.len() > 1 || series.iter().any(|s| !s.label.is_empty()) {
        chart
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// A chart of one series of means with ±1 standard deviation error bars against x, with an
/// optional horizontal dashed reference line (e.g. the digital baseline).
#[derive(Debug, Clone, Default)]
pub struct ErrorBarChart {
    /// Title.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// Legend label of the series.
    pub label: String,
    /// (x, mean, std) per point, in x order.
    pub points: Vec<(f64, f64, f64)>,
    /// Tick labels for x = 0, 1, 2, … (categorical x); `None` = numeric x.
    pub x_ticks: Option<Vec<String>>,
    /// Legend label and y of the dashed reference line.
    pub reference: Option<(String, f64)>,
    /// Fixed y range (default: fitted to the data).
    pub y_range: Option<(f64, f64)>,
}

impl ErrorBarChart {
    /// Draw into `path` (`.png` or `.svg`).
    pub fn draw(&self, path: &Path) -> Result<()> {
        save_chart(path, |r| self.draw_on(r), |r| self.draw_on(r))
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = plot_error::<DB::ErrorType>;
        root.fill(&WHITE).map_err(err)?;
        let xs = self.points.iter().map(|p| p.0);
        let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        let pad = if x1 > x0 { 0.05 * (x1 - x0) } else { 0.5 };
        let (x0, x1) = (x0 - pad, x1 + pad);
        let (y0, y1) = match self.y_range {
            Some(r) => r,
            None => {
                let mut lo = f64::INFINITY;
                let mut hi = f64::NEG_INFINITY;
                for &(_, m, s) in &self.points {
                    lo = lo.min(m - s);
                    hi = hi.max(m + s);
                }
                if let Some((_, r)) = &self.reference {
                    lo = lo.min(*r);
                    hi = hi.max(*r);
                }
                if !lo.is_finite() {
                    (0.0, 1.0)
                } else if hi <= lo {
                    (lo - 0.5, hi + 0.5)
                } else {
                    (lo, hi)
                }
            }
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        let ticks = self.x_ticks.clone();
        let fmt = move |x: &f64| match &ticks {
            Some(t) => {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len() {
                    t[i as usize].clone()
                } else {
                    String::new()
                }
            }
            None => tick(*x),
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style(("sans-serif", 14))
            .x_label_formatter(&fmt);
        if let Some(t) = &self.x_ticks {
            mesh.x_labels(t.len().max(2) * 4);
        }
        mesh.draw().map_err(err)?;
        let color = Palette99::pick(0).to_rgba();
        chart
            .draw_series(LineSeries::new(
                self.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(self.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        let cap = 0.01 * (x1 - x0);
        chart
            .draw_series(self.points.iter().flat_map(|&(x, m, s)| {
                [
                    PathElement::new(vec![(x, m - s), (x, m + s)], color.stroke_width(2)),
                    PathElement::new(
                        vec![(x - cap, m - s), (x + cap, m - s)],
                        color.stroke_width(2),
                    ),
                    PathElement::new(
                        vec![(x - cap, m + s), (x + cap, m + s)],
                        color.stroke_width(2),
                    ),
                ]
            }))
            .map_err(err)?;
        chart
            .draw_series(
                self.points
                    .iter()
                    .map(|&(x, m, _)| Circle::new((x, m), 4, color.filled())),
            )
            .map_err(err)?;
        if let Some((label, r)) = &self.reference {
            let r = *r;
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, r), (x1, r)],
                    10,
                    6,
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}

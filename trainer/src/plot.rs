//! PNG plots of a run: loss and accuracy curves per epoch ([`plot_curves`]) and the confusion
//! matrix as a heat map ([`plot_confusion`]).
//!
//! The plots are drawn with plotters into memory, encoded as PNG and written atomically (a
//! temporary file renamed over the destination). Text uses a subset of DejaVu Sans embedded in
//! the binary (`trainer/assets/`), registered with plotters once as its `sans-serif` family.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, FontTransform};

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use crate::metrics::{truncate, ConfusionMatrix, EpochMetrics};

/// Width and height in pixels of [`plot_curves`]'s image.
pub const CURVES_SIZE: (u32, u32) = (1200, 500);

/// Width and height in pixels of [`plot_confusion`]'s image.
pub const CONFUSION_SIZE: (u32, u32) = (1000, 1000);

/// Up to this many classes, [`plot_confusion`] writes the counts in the cells.
pub const MAX_ANNOTATED_CLASSES: usize = 20;

/// The bundled font (a subset of DejaVu Sans: Latin, Greek, punctuation).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// The family every text of the plots uses.
const FAMILY: &str = "sans-serif";

const TRAIN_COLOUR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOUR: RGBColor = RGBColor(255, 127, 14);
const TOP5_COLOUR: RGBColor = RGBColor(44, 160, 44);
const EMA_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// The colour of a row-normalised share of 1 in the heat map (0 is white).
const HEAT_COLOUR: (f64, f64, f64) = (8.0, 48.0, 107.0);

/// Registers the bundled font with plotters (once per process).
fn ensure_font(path: &Path) -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::plot(path, "the bundled font cannot be loaded"))
    }
}

/// Draws with `draw` on a white `size` canvas and writes it to `path` as a PNG.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font(path)?;
    let (w, h) = size;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error(path))?;
        draw(&root)?;
        root.present().map_err(plot_error(path))?;
    }
    let image = image::RgbImage::from_raw(w, h, pixels)
        .ok_or_else(|| Error::plot(path, "the pixel buffer does not match the image size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::plot(path, format!("cannot encode the PNG: {e}")))?;
    write_atomic(path, png.get_ref())
}

/// Turns a plotters error into an [`Error::Plot`] about `path`.
fn plot_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::plot(path, e.to_string())
}

/// Splits `points` into runs of consecutive points with a finite `y` (NaN and infinities
/// break a line).
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for &(x, y) in points {
        if y.is_finite() {
            current.push((x, y));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// One curve of a panel: its legend, colour and points.
struct Curve {
    label: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One panel of [`plot_curves`].
struct Panel<'a> {
    caption: &'a str,
    y_desc: &'a str,
    y_range: (f64, f64),
    y_decimals: usize,
    legend: SeriesLabelPosition,
    curves: &'a [Curve],
}

/// Draws one panel of [`plot_curves`]: the curves as lines with a marker per point, an x axis
/// of epochs spanning `x_range`, the y axis, and a legend.
fn draw_panel(
    path: &Path,
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    x_range: (f64, f64),
    panel: Panel<'_>,
) -> Result<()> {
    let Panel {
        caption,
        y_desc,
        y_range,
        y_decimals,
        legend,
        curves,
    } = panel;
    let err = plot_error(path);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
        .map_err(&err)?;
    let span = (x_range.1 - x_range.0).round().max(1.0) as usize;
    let x_formatter = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 {
            format!("{:.0}", x)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(span.min(12) + 1)
        .y_labels(8)
        .x_label_formatter(&x_formatter)
        .y_label_formatter(&|y: &f64| format!("{y:.y_decimals$}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(&err)?;
    let mut labelled = false;
    for curve in curves {
        let finite: Vec<(f64, f64)> = curve.points.iter().copied().filter(|p| p.1.is_finite()).collect();
        if finite.is_empty() {
            continue;
        }
        let colour = curve.colour;
        for run in finite_runs(&curve.points) {
            chart
                .draw_series(LineSeries::new(run, colour.stroke_width(2)))
                .map_err(&err)?;
        }
        chart
            .draw_series(finite.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(&err)?
            .label(curve.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        labelled = true;
    }
    if labelled {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(legend)
            .draw()
            .map_err(&err)?;
    }
    Ok(())
}

/// Plots the loss (train and validation) and the accuracy (train top-1, validation top-1 and
/// top-5, in percent) against the epoch, with the validation loss and top-1 of the weights'
/// moving average beside them when the epochs have one (`val_ema_*`), side by side under `title`, and writes the image to
/// `path` as a [`CURVES_SIZE`] PNG. A single epoch is drawn as points; non-finite values are
/// left out (they break a line). Fails with [`Error::Plot`] when `epochs` is empty or drawing
/// fails, and with [`Error::Io`] when the file cannot be written.
pub fn plot_curves(path: &Path, epochs: &[EpochMetrics], title: &str) -> Result<()> {
    if epochs.is_empty() {
        return Err(Error::plot(path, "no epochs to plot"));
    }
    let series = |f: fn(&EpochMetrics) -> f64, scale: f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|e| (e.epoch as f64, f(e) * scale)).collect()
    };
    let mut loss_curves = vec![
        Curve {
            label: "train",
            colour: TRAIN_COLOUR,
            points: series(|e| e.train_loss, 1.0),
        },
        Curve {
            label: "validation",
            colour: VAL_COLOUR,
            points: series(|e| e.val_loss, 1.0),
        },
    ];
    let mut accuracy_curves = vec![
        Curve {
            label: "train top-1",
            colour: TRAIN_COLOUR,
            points: series(|e| e.train_top1, 100.0),
        },
        Curve {
            label: "validation top-1",
            colour: VAL_COLOUR,
            points: series(|e| e.val_top1, 100.0),
        },
        Curve {
            label: "validation top-5",
            colour: TOP5_COLOUR,
            points: series(|e| e.val_top5, 100.0),
        },
    ];
    // The weights' moving average (`--model-ema`), when it was evaluated.
    if epochs.iter().any(|e| e.val_ema_top1.is_finite()) {
        loss_curves.push(Curve {
            label: "validation (EMA)",
            colour: EMA_COLOUR,
            points: series(|e| e.val_ema_loss, 1.0),
        });
        accuracy_curves.push(Curve {
            label: "validation top-1 (EMA)",
            colour: EMA_COLOUR,
            points: series(|e| e.val_ema_top1, 100.0),
        });
    }
    let (x_min, x_max) = epochs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
            (lo.min(e.epoch as f64), hi.max(e.epoch as f64))
        });
    let x_range = (x_min - 0.5, x_max + 0.5);
    let losses = loss_curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite());
    let (lo, hi) = losses.fold((0.0f64, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let loss_range = if hi.is_finite() && hi > lo {
        (lo, hi + 0.08 * (hi - lo))
    } else {
        (lo, lo + 1.0)
    };
    render_png(path, CURVES_SIZE, |root| {
        let body = root.titled(title, (FAMILY, 24)).map_err(plot_error(path))?;
        let (left, right) = body.split_horizontally(CURVES_SIZE.0 / 2);
        let loss = Panel {
            caption: "loss",
            y_desc: "loss",
            y_range: loss_range,
            y_decimals: 2,
            legend: SeriesLabelPosition::UpperRight,
            curves: &loss_curves,
        };
        draw_panel(path, &left, x_range, loss)?;
        let accuracy = Panel {
            caption: "accuracy",
            y_desc: "accuracy (%)",
            y_range: (0.0, 105.0),
            y_decimals: 0,
            legend: SeriesLabelPosition::LowerRight,
            curves: &accuracy_curves,
        };
        draw_panel(path, &right, x_range, accuracy)
    })
}

/// The heat-map colour of a share `t` in `[0, 1]`: white to dark blue.
fn heat(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let mix = |to: f64| (255.0 + (to - 255.0) * t).round() as u8;
    RGBColor(mix(HEAT_COLOUR.0), mix(HEAT_COLOUR.1), mix(HEAT_COLOUR.2))
}

/// Plots `cm` as a heat map and writes it to `path` as a [`CONFUSION_SIZE`] PNG: rows are true
/// classes (top to bottom), columns predicted classes, the colour of a cell is its share of the
/// row (so rare classes show as clearly as frequent ones), the counts are written in the cells
/// up to [`MAX_ANNOTATED_CLASSES`] classes, and the title gives the accuracy. Axes are labelled
/// with `class_names` (truncated; the index for classes without a name), every class up to 40
/// classes and evenly spaced ones beyond. Fails with [`Error::Plot`] for a matrix without
/// classes or when drawing fails, and with [`Error::Io`] when the file cannot be written.
pub fn plot_confusion(path: &Path, cm: &ConfusionMatrix, class_names: &[String]) -> Result<()> {
    let n = cm.num_classes();
    if n == 0 {
        return Err(Error::plot(path, "the confusion matrix has no classes"));
    }
    let (w, h) = (CONFUSION_SIZE.0 as i32, CONFUSION_SIZE.1 as i32);
    let (left, right, top, bottom) = (210, 40, 80, 190);
    let cell_w = f64::from(w - left - right) / n as f64;
    let cell_h = f64::from(h - top - bottom) / n as f64;
    let x_at = |j: usize| left + (j as f64 * cell_w).round() as i32;
    let y_at = |i: usize| top + (i as f64 * cell_h).round() as i32;
    let step = n.div_ceil(40);
    let label_size = (cell_h.min(cell_w) * step as f64 * 0.8).clamp(7.0, 14.0);
    let name = |i: usize| match class_names.get(i) {
        Some(name) => truncate(name, 24),
        None => i.to_string(),
    };
    render_png(path, CONFUSION_SIZE, |root| {
        let err = plot_error(path);
        let title = format!(
            "Confusion matrix: accuracy {:.2}% of {} images",
            100.0 * cm.accuracy(),
            cm.total()
        );
        let centre_top = Pos::new(HPos::Center, VPos::Top);
        let title_style = TextStyle::from((FAMILY, 24).into_font())
            .color(&BLACK)
            .pos(centre_top);
        root.draw(&Text::new(title, (w / 2, 14), title_style))
            .map_err(&err)?;
        let subtitle_colour = BLACK.mix(0.7);
        let subtitle_style = TextStyle::from((FAMILY, 14).into_font())
            .color(&subtitle_colour)
            .pos(centre_top);
        root.draw(&Text::new(
            "colour: share of the true class's images; rows: true class, columns: predicted class",
            (w / 2, 48),
            subtitle_style,
        ))
        .map_err(&err)?;

        for i in 0..n {
            let row_total: u64 = cm.row(i).iter().sum();
            for (j, &count) in cm.row(i).iter().enumerate() {
                let share = if row_total == 0 {
                    0.0
                } else {
                    count as f64 / row_total as f64
                };
                let (x0, y0, x1, y1) = (x_at(j), y_at(i), x_at(j + 1), y_at(i + 1));
                root.draw(&Rectangle::new([(x0, y0), (x1, y1)], heat(share).filled()))
                    .map_err(&err)?;
                if n <= MAX_ANNOTATED_CLASSES {
                    let text = count.to_string();
                    let size = (cell_h * 0.4)
                        .min(cell_w * 1.6 / text.len() as f64)
                        .clamp(7.0, 18.0);
                    let colour = if share > 0.5 { WHITE } else { BLACK };
                    let style = TextStyle::from((FAMILY, size).into_font())
                        .color(&colour)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(text, ((x0 + x1) / 2, (y0 + y1) / 2), style))
                        .map_err(&err)?;
                }
            }
        }
        let grid = BLACK.mix(0.35);
        root.draw(&Rectangle::new([(left, top), (x_at(n), y_at(n))], grid))
            .map_err(&err)?;

        let row_label = TextStyle::from((FAMILY, label_size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        let column_label = TextStyle::from(
            (FAMILY, label_size)
                .into_font()
                .transform(FontTransform::Rotate270),
        )
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
        for i in (0..n).step_by(step) {
            let y = (y_at(i) + y_at(i + 1)) / 2;
            root.draw(&Text::new(name(i), (left - 6, y), row_label.clone()))
                .map_err(&err)?;
            let x = (x_at(i) + x_at(i + 1)) / 2;
            root.draw(&Text::new(name(i), (x, y_at(n) + 6), column_label.clone()))
                .map_err(&err)?;
        }
        let axis_style = TextStyle::from((FAMILY, 18).into_font()).color(&BLACK);
        root.draw(&Text::new(
            "predicted class",
            ((left + x_at(n)) / 2, h - 12),
            axis_style.pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))
        .map_err(&err)?;
        let true_style = TextStyle::from((FAMILY, 18).into_font().transform(FontTransform::Rotate270))
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new("true class", (12, (top + y_at(n)) / 2), true_style))
            .map_err(&err)?;
        Ok(())
    })
}

//! Figures: a title, a subtitle, a grid of captioned panels and an optional colour bar, drawn
//! with plotters (text in a bundled subset of DejaVu Sans, `trainer/assets/`) and written as
//! PNG.

mod colormap;

pub use colormap::{colorize, overlay, signed_to_rgb, to_rgb, ColorMap};

use crate::{Error, Result};
use image::imageops::FilterType;
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const PAD: u32 = 12;
const HEADER: u32 = 62;
const CAPTION: u32 = 22;
const BAR_WIDTH: u32 = 96;

/// One captioned image of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    /// The pixels (scaled to the figure's cell, nearest neighbour, aspect kept).
    pub image: RgbImage,
    /// The line under it.
    pub caption: String,
}

/// A colour bar: what the colours of the panels mean.
#[derive(Debug, Clone)]
pub struct ColorBar {
    /// The colour map.
    pub map: ColorMap,
    /// The value at the bottom.
    pub min: f32,
    /// The value at the top.
    pub max: f32,
    /// What the values are.
    pub label: String,
}

/// A titled grid of panels.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The first line (model, method, layer).
    pub title: String,
    /// The second line (class, probability, settings).
    pub subtitle: String,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
    /// Panels per row.
    pub columns: usize,
    /// The side of a panel's cell in pixels.
    pub cell: u32,
    /// An optional colour bar on the right.
    pub colorbar: Option<ColorBar>,
}

fn ensure_font(path: &Path) -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(render_error(path, "the bundled font cannot be loaded"))
    }
}

fn render_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Render {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Figure {
    /// Draws the figure and writes it to `path` as a PNG.
    pub fn save(&self, path: &Path) -> Result<()> {
        ensure_font(path)?;
        let columns = self.columns.clamp(1, self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(columns).max(1);
        let cell = self.cell.max(16);
        let bar = if self.colorbar.is_some() { BAR_WIDTH } else { 0 };
        let grid_w = columns as u32 * (cell + PAD) + PAD;
        let width = (grid_w + bar).max(420);
        let height = HEADER + rows as u32 * (cell + CAPTION + PAD) + PAD;
        let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
        let mut origins = Vec::new();
        for (i, panel) in self.panels.iter().enumerate() {
            let (r, c) = ((i / columns) as u32, (i % columns) as u32);
            let (x, y) = (PAD + c * (cell + PAD), HEADER + r * (cell + CAPTION + PAD));
            let (pw, ph) = panel.image.dimensions();
            let scale = cell as f32 / pw.max(ph).max(1) as f32;
            let (sw, sh) = (
                ((pw as f32 * scale) as u32).max(1),
                ((ph as f32 * scale) as u32).max(1),
            );
            let scaled = image::imageops::resize(&panel.image, sw, sh, FilterType::Nearest);
            let (ox, oy) = (x + (cell - sw) / 2, y + (cell - sh) / 2);
            image::imageops::replace(&mut canvas, &scaled, ox as i64, oy as i64);
            origins.push((x, y));
        }
        let bar_area = self.colorbar.as_ref().map(|b| {
            let (x, y0, h) = (
                grid_w + 8,
                HEADER + 8,
                (rows as u32 * (cell + CAPTION + PAD)).saturating_sub(24).max(40),
            );
            for dy in 0..h {
                let color = b.map.color(1.0 - dy as f32 / (h - 1).max(1) as f32);
                for dx in 0..18 {
                    canvas.put_pixel(x + dx, y0 + dy, image::Rgb(color));
                }
            }
            (x, y0, h)
        });
        let mut pixels = canvas.into_raw();
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| render_error(path, e);
            let text = |size: u32| TextStyle::from((FAMILY, size).into_font()).color(&BLACK);
            root.draw_text(&self.title, &text(20), (PAD as i32, 8))
                .map_err(err)?;
            root.draw_text(&self.subtitle, &text(14), (PAD as i32, 36))
                .map_err(err)?;
            let centred = text(12).pos(Pos::new(HPos::Center, VPos::Top));
            for ((x, y), panel) in origins.iter().zip(&self.panels) {
                let at = ((x + cell / 2) as i32, (y + cell + 4) as i32);
                root.draw_text(&panel.caption, &centred, at).map_err(err)?;
            }
            if let (Some(b), Some((x, y0, h))) = (&self.colorbar, bar_area) {
                let left = text(11).pos(Pos::new(HPos::Left, VPos::Center));
                for (frac, value) in [(0.0, b.max), (0.5, (b.min + b.max) / 2.0), (1.0, b.min)] {
                    let y = y0 as f32 + frac * (h - 1) as f32;
                    root.draw_text(&format_value(value), &left, ((x + 22) as i32, y as i32))
                        .map_err(err)?;
                }
                let label = text(11).pos(Pos::new(HPos::Left, VPos::Top));
                root.draw_text(&b.label, &label, (x as i32 - 4, (y0 + h + 4) as i32))
                    .map_err(err)?;
            }
            root.present().map_err(err)?;
        }
        let image = RgbImage::from_raw(width, height, pixels)
            .ok_or_else(|| render_error(path, "the pixel buffer does not match the image size"))?;
        let mut png = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| render_error(path, e))?;
        // Whole or not at all: a full disk leaves no truncated PNG.
        backbone::io::write_atomic(path, png.get_ref()).map_err(|e| render_error(path, e))
    }
}

/// A colour-bar tick: 3 significant digits.
fn format_value(v: f32) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 0.01 && v.abs() < 1000.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

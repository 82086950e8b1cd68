//! Grids of small greyscale images side by side: inputs beside their reconstructions, or samples
//! decoded from the prior. Dark is high; all panels share one grey scale so they compare directly.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::canvas::{FONT, Picture};
use crate::error::{PlotError, draw};

/// One titled grid of images (each `side * side` values, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePanel {
    pub title: String,
    pub images: Vec<Vec<f64>>,
}

/// Panels of `columns`-wide image grids, left to right.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGrid {
    /// Image width and height in pixels of the data.
    pub side: usize,
    pub columns: usize,
    /// Screen pixels an image is about wide (a whole multiple of `side`, at least `side`).
    pub image_width: u32,
    pub panels: Vec<ImagePanel>,
}

const TITLE: u32 = 30;
const GAP: u32 = 4;
const MARGIN: u32 = 12;

impl ImageGrid {
    /// Screen pixels per data pixel: images about `image_width` pixels wide.
    fn scale(&self) -> u32 {
        (self.image_width / self.side.max(1) as u32).max(1)
    }

    fn rows(&self) -> usize {
        self.panels
            .iter()
            .map(|p| p.images.len().div_ceil(self.columns.max(1)))
            .max()
            .unwrap_or(0)
    }

    fn cell(&self) -> u32 {
        self.side as u32 * self.scale() + GAP
    }

    fn panel_width(&self) -> u32 {
        (self.columns as u32 * self.cell()).max(140)
    }
}

impl Picture for ImageGrid {
    const WHAT: &'static str = "image grid";

    fn size(&self) -> (u32, u32) {
        let n = self.panels.len() as u32;
        (
            n * self.panel_width() + (n + 1) * MARGIN,
            TITLE + self.rows() as u32 * self.cell() + MARGIN,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let pixels = self.side * self.side;
        if self.side == 0 || self.columns == 0 || self.panels.is_empty() {
            return Err(PlotError::data(Self::WHAT, "no panel, side or column"));
        }
        if let Some(bad) = self
            .panels
            .iter()
            .flat_map(|p| p.images.iter())
            .find(|im| im.len() != pixels)
        {
            return Err(PlotError::data(
                Self::WHAT,
                format!(
                    "an image of {} values is not {side} x {side}",
                    bad.len(),
                    side = self.side
                ),
            ));
        }
        let values = || {
            self.panels
                .iter()
                .flat_map(|p| p.images.iter().flatten())
                .copied()
                .filter(|v| v.is_finite())
        };
        let lo = values().fold(f64::INFINITY, f64::min);
        let hi = values().fold(f64::NEG_INFINITY, f64::max);
        if lo > hi {
            return Err(PlotError::data(Self::WHAT, "no finite value"));
        }
        let span = (hi - lo).max(1e-12);
        let scale = self.scale() as i32;
        for (p, panel) in self.panels.iter().enumerate() {
            let x0 = (MARGIN + p as u32 * (self.panel_width() + MARGIN)) as i32;
            root.draw(&Text::new(
                panel.title.clone(),
                (x0, 6),
                (FONT, 16).into_font().color(&BLACK),
            ))
            .map_err(draw)?;
            for (i, image) in panel.images.iter().enumerate() {
                let cx = x0 + (i % self.columns) as i32 * self.cell() as i32;
                let cy = TITLE as i32 + (i / self.columns) as i32 * self.cell() as i32;
                for (k, v) in image.iter().enumerate() {
                    let t = if v.is_finite() { (v - lo) / span } else { 0.0 };
                    let g = (255.0 * (1.0 - t)).round().clamp(0.0, 255.0) as u8;
                    let (r, c) = ((k / self.side) as i32, (k % self.side) as i32);
                    let (x, y) = (cx + c * scale, cy + r * scale);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + scale, y + scale)],
                        RGBColor(g, g, g).filled(),
                    ))
                    .map_err(draw)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{render, testing::check};

    #[test]
    fn inputs_beside_reconstructions() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-images-{}", std::process::id()));
        let image =
            |s: usize| -> Vec<f64> { (0..64).map(|k| ((k * 7 + s * 3) % 17) as f64).collect() };
        let grid = ImageGrid {
            image_width: 48,
            side: 8,
            columns: 4,
            panels: vec![
                ImagePanel {
                    title: "inputs".into(),
                    images: (0..8).map(image).collect(),
                },
                ImagePanel {
                    title: "reconstructions".into(),
                    images: (0..8).map(|s| image(s + 1)).collect(),
                },
            ],
        };
        let r = render(&grid, &dir, "recon").unwrap();
        // 8x8 images at 6 pixels per data pixel, 52-pixel cells, 4 columns, 2 rows.
        assert_eq!((r.width, r.height), (2 * 208 + 3 * 12, 30 + 2 * 52 + 12));
        check(&r, &["inputs", "reconstructions"]);
        let bad = ImageGrid { side: 3, ..grid };
        assert!(render(&bad, &dir, "bad").is_err());
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

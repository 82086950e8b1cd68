//! Bars of one value per category: the KL divergence of each latent dimension (which dimensions the
//! model uses; collapsed ones sit at zero).

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::canvas::{FONT, Picture, palette};
use crate::error::{PlotError, draw};

/// One bar per label, 640 x 380 pixels (wider with many bars).
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub labels: Vec<String>,
    /// One finite value per label.
    pub values: Vec<f64>,
}

impl Picture for Bars {
    const WHAT: &'static str = "bar chart";

    fn size(&self) -> (u32, u32) {
        ((120 + 28 * self.values.len() as u32).max(640), 380)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        if self.values.is_empty() || self.values.len() != self.labels.len() {
            return Err(PlotError::data(
                Self::WHAT,
                format!(
                    "{} values for {} labels",
                    self.values.len(),
                    self.labels.len()
                ),
            ));
        }
        if self.values.iter().any(|v| !v.is_finite()) {
            return Err(PlotError::data(Self::WHAT, "a value is not finite"));
        }
        let n = self.values.len();
        let lo = self.values.iter().copied().fold(0.0, f64::min);
        let hi = self.values.iter().copied().fold(0.0, f64::max);
        let span = (hi - lo).max(1e-12);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, lo - 0.02 * span..hi + 0.08 * span)
            .map_err(draw)?;
        let labels = &self.labels;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .light_line_style(RGBColor(244, 244, 244))
            .max_light_lines(4)
            .x_labels(n.min(40))
            .x_label_formatter(&|x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(draw)?;
        chart
            .draw_series(self.values.iter().enumerate().map(|(i, &v)| {
                let x = i as f64;
                Rectangle::new([(x - 0.38, 0.0), (x + 0.38, v)], palette(0).filled())
            }))
            .map_err(draw)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{render, testing::check};

    #[test]
    fn kl_per_dimension() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-bars-{}", std::process::id()));
        let bars = Bars {
            title: "KL per latent dimension".into(),
            x_label: "latent dimension".into(),
            y_label: "KL (nats)".into(),
            labels: (0..8).map(|i| format!("z{i}")).collect(),
            values: vec![2.1, 0.0, 1.3, 0.01, 0.0, 3.2, 0.4, 0.0],
        };
        let r = render(&bars, &dir, "kl").unwrap();
        assert_eq!((r.width, r.height), (640, 380));
        check(&r, &["latent dimension", "KL (nats)", "z5"]);
        let bad = Bars {
            values: vec![1.0],
            ..bars
        };
        assert!(render(&bad, &dir, "bad").is_err());
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

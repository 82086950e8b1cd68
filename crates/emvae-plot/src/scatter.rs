//! Scatter panels side by side on shared axes: a latent map (posterior means coloured by label, beside
//! samples from the prior), or posterior means of a linear-Gaussian model's factors.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::canvas::{FONT, Picture, draw_legend, padded_range, palette};
use crate::error::{PlotError, draw};

/// Points drawn in one colour, named in the legend (a label, a component, "prior").
#[derive(Debug, Clone, PartialEq)]
pub struct PointGroup {
    pub name: String,
    /// `(x, y)`; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

/// One panel: its title and groups (colours follow the groups' order, from [`crate::palette`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub groups: Vec<PointGroup>,
}

/// Panels side by side, 480 x 460 pixels each, on the same axis ranges so they compare directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Scatter {
    pub x_label: String,
    pub y_label: String,
    pub panels: Vec<Panel>,
}

const PANEL: (u32, u32) = (480, 460);

impl Picture for Scatter {
    const WHAT: &'static str = "scatter plot";

    fn size(&self) -> (u32, u32) {
        (PANEL.0 * self.panels.len().max(1) as u32, PANEL.1)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let finite = || {
            self.panels
                .iter()
                .flat_map(|p| p.groups.iter())
                .flat_map(|g| g.points.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        if self.panels.is_empty() || finite().next().is_none() {
            return Err(PlotError::data(Self::WHAT, "no finite point"));
        }
        let xs = padded_range(finite().map(|p| p.0));
        let ys = padded_range(finite().map(|p| p.1));
        let areas = root.split_evenly((1, self.panels.len()));
        for (panel, area) in self.panels.iter().zip(&areas) {
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FONT, 18))
                .margin(8)
                .x_label_area_size(38)
                .y_label_area_size(52)
                .build_cartesian_2d(xs.clone(), ys.clone())
                .map_err(draw)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 14))
                .light_line_style(RGBColor(244, 244, 244))
                .max_light_lines(4)
                .draw()
                .map_err(draw)?;
            for (i, group) in panel.groups.iter().enumerate() {
                let colour = palette(i);
                let points = group
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite());
                chart
                    .draw_series(points.map(|p| Circle::new(p, 2, colour.mix(0.6).filled())))
                    .map_err(draw)?
                    .label(&group.name)
                    .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
            }
            if panel.groups.len() > 1 {
                draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
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
    fn latent_map_beside_prior_samples() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-scatter-{}", std::process::id()));
        let ring = |c: f64, n: usize| -> Vec<(f64, f64)> {
            (0..n)
                .map(|i| {
                    let t = i as f64 * 0.7;
                    (c + t.cos() * (1.0 + 0.01 * i as f64), c - t.sin())
                })
                .collect()
        };
        let scatter = Scatter {
            x_label: "z0".into(),
            y_label: "z1".into(),
            panels: vec![
                Panel {
                    title: "posterior means (held-out)".into(),
                    groups: vec![
                        PointGroup {
                            name: "label 0".into(),
                            points: ring(-2.0, 200),
                        },
                        PointGroup {
                            name: "label 1".into(),
                            points: ring(2.0, 200),
                        },
                    ],
                },
                Panel {
                    title: "prior samples".into(),
                    groups: vec![PointGroup {
                        name: "prior".into(),
                        points: ring(0.0, 300),
                    }],
                },
            ],
        };
        let r = render(&scatter, &dir, "latent").unwrap();
        assert_eq!((r.width, r.height), (960, 460));
        check(&r, &["z0", "z1", "label 1", "prior samples"]);
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

//! Training curves: one panel per quantity (log-likelihood, ELBO, KL, learning rate, ...), each with one
//! line per series (restarts of a mixture, training against held-out), against iteration or step.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::canvas::{FONT, Picture, draw_legend, padded_range, palette};
use crate::error::{PlotError, draw};

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text (e.g. "restart 0", "training", "held-out").
    pub name: String,
    /// `(x, y)` points in order of `x`; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

/// One quantity's panel.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Training curves: a grid of [`CurvePanel`]s, two per row, each 520 x 340 pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    pub panels: Vec<CurvePanel>,
}

const PANEL: (u32, u32) = (520, 340);

impl Curves {
    fn columns(&self) -> usize {
        self.panels.len().clamp(1, 2)
    }
}

impl Picture for Curves {
    const WHAT: &'static str = "training curves";

    fn size(&self) -> (u32, u32) {
        let cols = self.columns() as u32;
        let rows = self.panels.len().div_ceil(self.columns()).max(1) as u32;
        (PANEL.0 * cols, PANEL.1 * rows)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let drawable: Vec<&CurvePanel> = self
            .panels
            .iter()
            .filter(|p| {
                p.series
                    .iter()
                    .any(|s| s.points.iter().any(|(x, y)| x.is_finite() && y.is_finite()))
            })
            .collect();
        if drawable.len() != self.panels.len() || drawable.is_empty() {
            return Err(PlotError::data(Self::WHAT, "a panel has no finite point"));
        }
        let cols = self.columns();
        let rows = self.panels.len().div_ceil(cols);
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in self.panels.iter().zip(&areas) {
            draw_panel(panel, area)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    panel: &CurvePanel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), PlotError> {
    let finite = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let xs = padded_range(finite().map(|p| p.0));
    let ys = padded_range(finite().map(|p| p.1));
    // Whole-number x (iterations, numbers of components) gets whole-number tick labels.
    let integral = finite().all(|(x, _)| x.fract() == 0.0);
    let x_format = |x: &f64| {
        if integral {
            format!("{x:.0}")
        } else {
            format!("{x}")
        }
    };
    let legend = emptiest_corner(finite().copied(), (xs.start, xs.end), (ys.start, ys.end));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 18))
        .margin(8)
        .x_label_area_size(38)
        .y_label_area_size(70)
        .build_cartesian_2d(xs, ys)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(4)
        .x_label_formatter(&x_format)
        .x_labels(6)
        .y_labels(6)
        .draw()
        .map_err(draw)?;
    for (i, s) in panel.series.iter().enumerate() {
        let colour = palette(i);
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let drawn = chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(draw)?;
        drawn.label(&s.name).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
        });
        if points.len() == 1 {
            // A one-point series marks a point (a selected model): a ring that shows over the lines.
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, 8, colour.stroke_width(3))),
                )
                .map_err(draw)?;
        } else if points.len() <= 40 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(draw)?;
        }
    }
    if panel.series.len() > 1 {
        draw_legend(&mut chart, legend)?;
    }
    Ok(())
}

/// The corner of the plotting range `x` by `y` whose quarter holds the fewest points, for the legend
/// (lower right on a tie: rising curves leave it empty).
fn emptiest_corner(
    points: impl Iterator<Item = (f64, f64)>,
    x: (f64, f64),
    y: (f64, f64),
) -> SeriesLabelPosition {
    let (x_mid, y_mid) = ((x.0 + x.1) / 2.0, (y.0 + y.1) / 2.0);
    // Lower right, upper right, lower left, upper left.
    let mut counts = [0usize; 4];
    for (px, py) in points {
        counts[usize::from(px < x_mid) * 2 + usize::from(py >= y_mid)] += 1;
    }
    let corners = [
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerLeft,
        SeriesLabelPosition::UpperLeft,
    ];
    let emptiest = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    corners[emptiest].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{render, testing::check};

    #[test]
    fn curves_render_with_labels_and_legend() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-curves-{}", std::process::id()));
        let series = |name: &str, shift: f64| Series {
            name: name.into(),
            points: (1..=30)
                .map(|i| (i as f64, -3.0 - shift - 1.0 / i as f64))
                .collect(),
        };
        let curves = Curves {
            panels: vec![
                CurvePanel {
                    title: "Log-likelihood".into(),
                    x_label: "EM iteration".into(),
                    y_label: "log-likelihood per row".into(),
                    series: vec![series("restart 0", 0.0), series("restart 1", 0.2)],
                },
                CurvePanel {
                    title: "Learning rate".into(),
                    x_label: "step".into(),
                    y_label: "lr".into(),
                    series: vec![Series {
                        name: "lr".into(),
                        points: vec![(0.0, 1e-3), (10.0, 1e-3), (20.0, f64::NAN)],
                    }],
                },
            ],
        };
        let r = render(&curves, &dir, "curves").unwrap();
        assert_eq!((r.width, r.height), (1040, 340));
        check(
            &r,
            &[
                "EM iteration",
                "log-likelihood per row",
                "restart 1",
                "Learning rate",
            ],
        );
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn an_empty_panel_is_refused() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-empty-{}", std::process::id()));
        let curves = Curves {
            panels: vec![CurvePanel {
                title: "t".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                series: vec![Series {
                    name: "s".into(),
                    points: vec![(1.0, f64::NAN)],
                }],
            }],
        };
        assert!(matches!(
            render(&curves, &dir, "c"),
            Err(PlotError::Data { .. })
        ));
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

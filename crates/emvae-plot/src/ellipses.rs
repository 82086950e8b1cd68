//! A Gaussian mixture over its data: points coloured by their most probable component, each component's
//! mean with its 1- and 2-sigma ellipses. Data of more than two features are shown on their first two
//! principal axes ([`Projection`]), where each component's covariance projects to a 2 x 2 one.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::canvas::{FONT, Picture, draw_legend, padded_range, palette};
use crate::error::{PlotError, draw};

/// One component's mean and covariance in the picture's two coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipse {
    pub centre: (f64, f64),
    /// Symmetric, positive semi-definite.
    pub covariance: [[f64; 2]; 2],
}

impl Ellipse {
    /// `n` points of the contour at `k` standard deviations (`centre + k L (cos t, sin t)` with
    /// `L L^T` the covariance).
    pub fn contour(&self, k: f64, n: usize) -> Vec<(f64, f64)> {
        let [[a, b], [_, c]] = self.covariance;
        let l11 = a.max(0.0).sqrt();
        let l21 = if l11 > 0.0 { b / l11 } else { 0.0 };
        let l22 = (c - l21 * l21).max(0.0).sqrt();
        (0..=n)
            .map(|i| {
                let t = std::f64::consts::TAU * i as f64 / n as f64;
                let (u, v) = (k * t.cos(), k * t.sin());
                (self.centre.0 + l11 * u, self.centre.1 + l21 * u + l22 * v)
            })
            .collect()
    }
}

/// A linear map of `d`-dimensional points to two coordinates: the identity for `d = 2`, else the
/// first two principal axes of the data (centred).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    d: usize,
    mean: Vec<f64>,
    /// Two unit vectors of length `d`.
    axes: [Vec<f64>; 2],
    /// Whether this is a principal-axes projection (else the identity on two features).
    pub principal: bool,
}

impl Projection {
    /// The projection of the row-major `n x d` `data` (`d >= 2`).
    pub fn of(data: &[f64], d: usize) -> Result<Self, PlotError> {
        const WHAT: &str = "a projection";
        if d < 2 || data.is_empty() || !data.len().is_multiple_of(d) {
            return Err(PlotError::data(
                WHAT,
                format!("needs rows of at least 2 features, got {d}"),
            ));
        }
        if d == 2 {
            return Ok(Self {
                d,
                mean: vec![0.0; 2],
                axes: [vec![1.0, 0.0], vec![0.0, 1.0]],
                principal: false,
            });
        }
        let n = data.len() / d;
        let mut mean = vec![0.0; d];
        for row in data.chunks(d) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x / n as f64;
            }
        }
        let mut cov = vec![0.0; d * d];
        for row in data.chunks(d) {
            for i in 0..d {
                let ci = row[i] - mean[i];
                for j in 0..=i {
                    cov[i * d + j] += ci * (row[j] - mean[j]) / n as f64;
                }
            }
        }
        let eig = emvae_core::linalg::symmetric_eigen(&cov, d)
            .map_err(|e| PlotError::data(WHAT, e.to_string()))?;
        let axis = |k: usize| (0..d).map(|i| eig.vectors[i * d + k]).collect::<Vec<_>>();
        Ok(Self {
            d,
            mean,
            axes: [axis(0), axis(1)],
            principal: true,
        })
    }

    /// The two coordinates of a `d`-dimensional point.
    pub fn point(&self, x: &[f64]) -> (f64, f64) {
        let dot = |a: &[f64]| {
            x.iter()
                .zip(&self.mean)
                .zip(a)
                .map(|((x, m), a)| (x - m) * a)
                .sum::<f64>()
        };
        (dot(&self.axes[0]), dot(&self.axes[1]))
    }

    /// The 2 x 2 covariance `A^T S A` of a row-major `d x d` covariance `s`.
    pub fn covariance(&self, s: &[f64]) -> [[f64; 2]; 2] {
        let d = self.d;
        let mut out = [[0.0; 2]; 2];
        for (p, a) in self.axes.iter().enumerate() {
            for (q, b) in self.axes.iter().enumerate() {
                let mut v = 0.0;
                for i in 0..d {
                    for j in 0..d {
                        v += a[i] * s[i * d + j] * b[j];
                    }
                }
                out[p][q] = v;
            }
        }
        out
    }

    /// Axis names: `x0`/`x1` for two features, else `principal axis 1`/`2`.
    pub fn labels(&self) -> (String, String) {
        if self.principal {
            ("principal axis 1".into(), "principal axis 2".into())
        } else {
            ("x0".into(), "x1".into())
        }
    }
}

/// Data coloured by component with each component's ellipses; 640 x 560 pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct MixturePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// `(x, y)` of each row and its component (an index into `ellipses`).
    pub points: Vec<((f64, f64), usize)>,
    pub ellipses: Vec<Ellipse>,
}

impl Picture for MixturePlot {
    const WHAT: &'static str = "mixture ellipses";

    fn size(&self) -> (u32, u32) {
        (640, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        if self.ellipses.is_empty() {
            return Err(PlotError::data(Self::WHAT, "no component"));
        }
        if let Some(&(_, c)) = self.points.iter().find(|(_, c)| *c >= self.ellipses.len()) {
            return Err(PlotError::data(
                Self::WHAT,
                format!("component {c} of {} components", self.ellipses.len()),
            ));
        }
        let contours: Vec<[Vec<(f64, f64)>; 2]> = self
            .ellipses
            .iter()
            .map(|e| [e.contour(1.0, 96), e.contour(2.0, 96)])
            .collect();
        let all = || {
            self.points
                .iter()
                .map(|(p, _)| *p)
                .chain(contours.iter().flat_map(|c| c[1].iter().copied()))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        let xs = padded_range(all().map(|p| p.0));
        let ys = padded_range(all().map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(xs, ys)
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
        chart
            .draw_series(
                self.points
                    .iter()
                    .filter(|((x, y), _)| x.is_finite() && y.is_finite())
                    .map(|&(p, c)| Circle::new(p, 2, palette(c).mix(0.45).filled())),
            )
            .map_err(draw)?;
        for (k, (e, [one, two])) in self.ellipses.iter().zip(contours).enumerate() {
            let colour = palette(k);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    one,
                    colour.stroke_width(2),
                )))
                .map_err(draw)?
                .label(format!("component {k}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(std::iter::once(PathElement::new(
                    two,
                    colour.stroke_width(1),
                )))
                .map_err(draw)?;
            chart
                .draw_series(std::iter::once(Cross::new(
                    e.centre,
                    6,
                    BLACK.stroke_width(2),
                )))
                .map_err(draw)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{render, testing::check};

    #[test]
    fn one_sigma_contour_of_a_diagonal_covariance() {
        let e = Ellipse {
            centre: (1.0, -1.0),
            covariance: [[4.0, 0.0], [0.0, 1.0]],
        };
        let c = e.contour(1.0, 4);
        assert!((c[0].0 - 3.0).abs() < 1e-12 && (c[0].1 + 1.0).abs() < 1e-12);
        assert!((c[1].0 - 1.0).abs() < 1e-12 && (c[1].1 - 0.0).abs() < 1e-12);
    }

    #[test]
    fn principal_axes_of_a_line_in_three_dimensions() {
        // Points along (1, 1, 0) with a little spread along (0, 0, 1), centred at (0, 0, 0.1).
        let data: Vec<f64> = (0..51)
            .flat_map(|i| {
                let t = i as f64 - 25.0;
                [t, t, 0.1 * (i % 3) as f64]
            })
            .collect();
        let p = Projection::of(&data, 3).unwrap();
        assert!(p.principal);
        let (a, b) = p.point(&[1.0, 1.0, 0.1]);
        assert!((a.abs() - 2f64.sqrt()).abs() < 1e-6, "{a}");
        assert!(b.abs() < 0.2, "{b}");
        let s = p.covariance(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert!((s[0][0] - 1.0).abs() < 1e-9 && s[0][1].abs() < 1e-9);
        assert!(Projection::of(&[1.0, 2.0], 1).is_err());
    }

    #[test]
    fn mixture_with_ellipses() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-ellipses-{}", std::process::id()));
        let ellipses = vec![
            Ellipse {
                centre: (-3.0, 0.0),
                covariance: [[1.0, 0.5], [0.5, 1.0]],
            },
            Ellipse {
                centre: (3.0, 1.0),
                covariance: [[0.5, -0.2], [-0.2, 2.0]],
            },
        ];
        let points = (0..400)
            .map(|i| {
                let c = i % 2;
                let t = i as f64 * 0.37;
                let e = &ellipses[c];
                ((e.centre.0 + t.sin(), e.centre.1 + (1.3 * t).cos()), c)
            })
            .collect();
        let plot = MixturePlot {
            title: "Gaussian mixture".into(),
            x_label: "x0".into(),
            y_label: "x1".into(),
            points,
            ellipses,
        };
        let r = render(&plot, &dir, "mixture").unwrap();
        assert_eq!((r.width, r.height), (640, 560));
        check(&r, &["x0", "x1", "component 1"]);
        let bad = MixturePlot {
            points: vec![((0.0, 0.0), 5)],
            ..plot
        };
        assert!(render(&bad, &dir, "bad").is_err());
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

//! Pictures of emvae runs and a self-contained HTML report, drawn from plain data.
//!
//! This crate knows nothing of models: the command line gathers series, points, ellipses, bars, images
//! and tables from a run directory (and from a model's library API) and hands them here. Every picture
//! is drawn once per backend and written as both PNG and SVG ([`render`]); [`report::Report`] puts the
//! PNGs, the run's summary and its resolved config into one HTML page with no external resources.
//!
//! Text in the PNGs is drawn with an embedded DejaVu Sans (see `fonts/LICENSE-DejaVu.txt`), so no
//! system font is looked up and pictures render the same on a machine with no fonts installed.

mod bars;
mod base64;
mod canvas;
mod curves;
mod ellipses;
mod error;
mod images;
pub mod report;
mod scatter;

pub use bars::Bars;
pub use base64::encode as base64_encode;
pub use canvas::{Picture, Rendered, palette, render};
pub use curves::{CurvePanel, Curves, Series};
pub use ellipses::{Ellipse, MixturePlot, Projection};
pub use error::PlotError;
pub use images::{ImageGrid, ImagePanel};
pub use scatter::{Panel, PointGroup, Scatter};

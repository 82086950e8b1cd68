//! `emvae plot`: pictures of a run and its `report.html`, also made at the end of every `train` (unless
//! `[run] plot = false`). This module gathers plain data from the run directory (metrics, summary,
//! config) and from the model's library API (posterior means, components, decoded samples); drawing is
//! `emvae_plot`'s.

use std::path::{Path, PathBuf};

use emvae_core::run::RunDir;
use emvae_plot::report::{Figure, Report, Table};
use emvae_plot::{
    Bars, CurvePanel, Curves, Ellipse, ImageGrid, ImagePanel, MixturePlot, Panel, Picture,
    PointGroup, Projection, Scatter, Series,
};
use serde_json::Value;

use crate::args::PlotArgs;
use crate::error::{CliError, CliResult};
use crate::runconfig::ModelKind;
use crate::runs::open_run;

/// The report's file name.
pub const REPORT: &str = "report.html";

/// What one plotting pass made.
#[derive(Debug, Default)]
pub struct Made {
    pub files: Vec<PathBuf>,
    pub report: PathBuf,
    /// Pictures that could not be made, and why.
    pub notes: Vec<String>,
}

/// `emvae plot --run DIR [--out DIR]`: pictures into `--out` (default `DIR/plots`), the report into the
/// run directory (into `--out` when given).
pub fn plot(args: &PlotArgs) -> CliResult<()> {
    let (out, report) = match &args.out {
        Some(out) => (out.clone(), out.join(REPORT)),
        None => (args.run.join("plots"), args.run.join(REPORT)),
    };
    let made = make(&args.run, &out, &report)?;
    for note in &made.notes {
        tracing::warn!("{note}");
    }
    let files: Vec<String> = made.files.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "report": made.report.display().to_string(),
            "files": files,
            "skipped": made.notes,
        }))
        .unwrap_or_default()
    );
    Ok(())
}

/// After a successful `train`: plots unless the run's config says `[run] plot = false`. A failure only
/// warns; the run is complete either way.
pub fn after_train(dir: &Path) {
    let wanted = match open_run(dir, None) {
        Ok((loaded, run)) => loaded.config.run.plot && run.exists(RunDir::SUMMARY),
        Err(_) => false,
    };
    if !wanted {
        return;
    }
    match make(dir, &dir.join("plots"), &dir.join(REPORT)) {
        Ok(made) => {
            for note in &made.notes {
                tracing::warn!("plot: {note}");
            }
            tracing::info!(
                "wrote {} pictures and {}",
                made.files.len(),
                made.report.display()
            );
        }
        Err(e) => tracing::warn!("plotting failed (the run itself is complete): {e}"),
    }
}

/// A series' legend name and its key path in a metrics record.
type NamedKey<'a> = (&'a str, &'a [&'a str]);

/// A picture to draw, or why there is none.
type Wanted = (&'static str, &'static str, CliResult<Option<PictureOf>>);

/// One pass: every picture the run allows, then the report.
pub fn make(dir: &Path, out: &Path, report_path: &Path) -> CliResult<Made> {
    let (loaded, run) = open_run(dir, None)?;
    let kind = loaded.config.model;
    let metrics = read_metrics(&run.path(RunDir::METRICS));
    let summary: Option<Value> = std::fs::read_to_string(run.path(RunDir::SUMMARY))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let config = std::fs::read_to_string(run.path(RunDir::CONFIG)).ok();
    let kl = kl_per_dim(summary.as_ref(), &metrics);

    let mut wanted: Vec<Wanted> = vec![(
        "curves",
        "Training curves",
        Ok(curves(&metrics).map(PictureOf::Curves)),
    )];
    match kind {
        ModelKind::Gmm => {
            wanted.push((
                "mixture",
                "Data coloured by most probable component, with each component's 1- and 2-sigma ellipses",
                mixture(dir),
            ));
            if let Some(selection) = summary.as_ref().and_then(|s| s.get("selection")) {
                wanted.push((
                    "selection",
                    "BIC and AIC of the training rows against the number of components, one line per covariance type; the selected mixture marked (lower is better)",
                    Ok(selection_curves(selection).map(PictureOf::Curves)),
                ));
            }
        }
        ModelKind::Ppca | ModelKind::Fa => wanted.push((
            "latent",
            "Posterior means of the factors z (first two dimensions)",
            linear_latent(dir),
        )),
        ModelKind::Vae => match crate::vae::view(dir) {
            Ok(view) => {
                wanted.push((
                    "latent",
                    "Posterior means (coloured by label where labels exist) beside samples from the prior",
                    Ok(vae_latent(&view, kl.as_deref())),
                ));
                wanted.push((
                    "kl",
                    "KL divergence per latent dimension (held-out)",
                    Ok(kl_bars(kl.as_deref())),
                ));
                wanted.push((
                    "reconstructions",
                    "Inputs beside their reconstructions (likelihood means)",
                    Ok(image_grid(&[
                        ("inputs", &view.inputs),
                        ("reconstructions", &view.reconstructions),
                    ], 48)),
                ));
                wanted.push((
                    "samples",
                    "Samples from the prior, decoded (likelihood means)",
                    Ok(image_grid(&[("samples from the prior", &view.samples)], 48)),
                ));
            }
            Err(e) => wanted.push(("latent", "", Err(e))),
        },
        ModelKind::Text => {
            wanted.push((
                "latent",
                "Posterior means of sentences (coloured by label where the corpus has labels) beside samples from the prior",
                crate::text_view::latent_view(dir).map(|v| vae_latent(&v, kl.as_deref())),
            ));
            wanted.push((
                "kl",
                "KL divergence per latent dimension (held-out)",
                Ok(kl_bars(kl.as_deref())),
            ));
        }
        ModelKind::BernoulliMixture => wanted.push((
            "components",
            "Each component's probabilities p(x = 1 | z = j) as an image (square data), largest mixing weight first",
            crate::mixtures::bernoulli_components(dir)
                .map(|c| image_grid(&[("component probabilities", &c)], 96)),
        )),
        ModelKind::MultinomialMixture | ModelKind::Hmm => {}
    }

    let mut made = Made {
        report: report_path.to_path_buf(),
        ..Made::default()
    };
    let mut figures = Vec::new();
    for (name, caption, picture) in wanted {
        match picture.and_then(|p| p.map(|p| p.render(out, name)).transpose()) {
            Ok(Some(r)) => {
                made.files.push(r.png.clone());
                made.files.push(r.svg);
                figures.push(Figure {
                    caption: caption.to_string(),
                    png: r.png,
                });
            }
            Ok(None) => {}
            Err(e) => made.notes.push(format!("{name}: {e}")),
        }
    }
    let tables = summary.as_ref().map(text_tables).unwrap_or_default();
    let report = Report {
        title: format!("emvae {} run: {}", kind.name(), dir.display()),
        summary,
        figures,
        tables,
        config,
        notes: made.notes.clone(),
    };
    report
        .write(report_path)
        .map_err(|e| CliError::runtime(format!("cannot write the report: {e}")))?;
    Ok(made)
}

/// A picture of any kind.
enum PictureOf {
    Curves(Curves),
    Scatter(Scatter),
    Mixture(MixturePlot),
    Bars(Bars),
    Images(ImageGrid),
}

impl PictureOf {
    fn render(&self, out: &Path, name: &str) -> CliResult<emvae_plot::Rendered> {
        fn go<P: Picture>(p: &P, out: &Path, name: &str) -> CliResult<emvae_plot::Rendered> {
            emvae_plot::render(p, out, name).map_err(|e| CliError::runtime(e.to_string()))
        }
        match self {
            Self::Curves(p) => go(p, out, name),
            Self::Scatter(p) => go(p, out, name),
            Self::Mixture(p) => go(p, out, name),
            Self::Bars(p) => go(p, out, name),
            Self::Images(p) => go(p, out, name),
        }
    }
}

/// The records of `metrics.jsonl` that parse (a torn last line of a killed run is skipped).
fn read_metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(Value::is_object)
                .collect()
        })
        .unwrap_or_default()
}

fn number(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
}

/// A panel of the quantity at `key` (a path into each record) against `x`, one series per `group` value
/// (restarts), or `None` when no record has it.
fn panel(
    records: &[Value],
    x: &[&str],
    x_label: &str,
    series: &[NamedKey],
    title: &str,
    y_label: &str,
) -> Option<CurvePanel> {
    let series: Vec<Series> = series
        .iter()
        .map(|(name, key)| Series {
            name: name.to_string(),
            points: records
                .iter()
                .filter_map(|r| Some((number(r, x)?, number(r, key)?)))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    (!series.is_empty()).then(|| CurvePanel {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        series,
    })
}

/// A `[gmm.select]` sweep's BIC and AIC against the number of components (`summary.json`'s
/// `selection`), a line per covariance type, the winner marked on its criterion's panel.
fn selection_curves(selection: &Value) -> Option<Curves> {
    let candidates = selection.get("candidates")?.as_array()?;
    let type_of = |c: &Value| {
        c.get("covariance_type")
            .and_then(Value::as_str)
            .map(String::from)
    };
    let mut types: Vec<String> = Vec::new();
    for t in candidates.iter().filter_map(type_of) {
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let criterion = selection.get("criterion").and_then(Value::as_str)?;
    let best = candidates.get(selection.get("best")?.as_u64()? as usize)?;
    let panel = |key: &str, title: &str| {
        let mut series: Vec<Series> = types
            .iter()
            .map(|t| Series {
                name: t.clone(),
                points: candidates
                    .iter()
                    .filter(|c| type_of(c).as_deref() == Some(t))
                    .filter_map(|c| Some((number(c, &["n_components"])?, number(c, &[key])?)))
                    .collect(),
            })
            .collect();
        if key == criterion {
            series.push(Series {
                name: format!(
                    "selected: {} components, {}",
                    number(best, &["n_components"])?,
                    type_of(best)?
                ),
                points: vec![(number(best, &["n_components"])?, number(best, &[key])?)],
            });
        }
        Some(CurvePanel {
            title: title.into(),
            x_label: "number of components".into(),
            y_label: key.to_uppercase(),
            series,
        })
    };
    Some(Curves {
        panels: vec![
            panel("bic", "Bayesian information criterion")?,
            panel("aic", "Akaike information criterion")?,
        ],
    })
}

/// Training curves from `metrics.jsonl`: exact EM's log-likelihood per iteration (a line per restart),
/// online EM's per-batch log-likelihood and step size, a VAE's or text model's ELBO (training and
/// held-out), reconstruction, KL, KL weight, learning rate and held-out importance-weighted NLL.
fn curves(records: &[Value]) -> Option<Curves> {
    let first = records.first()?;
    let mut panels = Vec::new();
    if first.get("rows_seen").is_some() {
        // Online EM: one record per batch.
        panels.extend(panel(
            records,
            &["rows_seen"],
            "rows seen",
            &[("batch", &["log_likelihood"])],
            "Log-likelihood per row (batch)",
            "log-likelihood",
        ));
        panels.extend(panel(
            records,
            &["rows_seen"],
            "rows seen",
            &[("step size", &["step_size"])],
            "Step size",
            "step size",
        ));
    } else if first.get("iteration").is_some() {
        // Exact EM: one line per restart.
        let mut restarts: Vec<u64> = records
            .iter()
            .filter_map(|r| r.get("restart").and_then(Value::as_u64))
            .collect();
        restarts.sort_unstable();
        restarts.dedup();
        if restarts.is_empty() {
            restarts.push(0);
        }
        let series: Vec<Series> = restarts
            .iter()
            .map(|&k| Series {
                name: format!("restart {k}"),
                points: records
                    .iter()
                    .filter(|r| r.get("restart").and_then(Value::as_u64).unwrap_or(0) == k)
                    .filter_map(|r| {
                        Some((number(r, &["iteration"])?, number(r, &["log_likelihood"])?))
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            panels.push(CurvePanel {
                title: "Log-likelihood per row".into(),
                x_label: "EM iteration".into(),
                y_label: "log-likelihood".into(),
                series,
            });
        }
    } else if first.get("step").is_some() {
        let x: &[&str] = &["step"];
        let panels_of: [(&str, &str, &[NamedKey]); 6] = [
            (
                "ELBO per example",
                "ELBO (nats)",
                &[("training", &["elbo"]), ("held-out", &["eval", "elbo"])],
            ),
            (
                "Reconstruction term",
                "E[log p(x|z)] (nats)",
                &[
                    ("training", &["reconstruction"]),
                    ("held-out", &["eval", "reconstruction"]),
                ],
            ),
            (
                "KL term",
                "KL(q(z|x) || p(z)) (nats)",
                &[("training", &["kl"]), ("held-out", &["eval", "kl"])],
            ),
            (
                "Held-out NLL (importance weighted)",
                "NLL (nats)",
                &[("held-out", &["eval", "iw", "nll"])],
            ),
            ("KL weight", "beta", &[("beta", &["beta"])]),
            ("Learning rate", "learning rate", &[("lr", &["lr"])]),
        ];
        for (title, y, series) in panels_of {
            panels.extend(panel(records, x, "optimisation step", series, title, y));
        }
    }
    (!panels.is_empty()).then_some(Curves { panels })
}

/// KL per latent dimension: the summary's, else the last held-out evaluation's.
fn kl_per_dim(summary: Option<&Value>, records: &[Value]) -> Option<Vec<f64>> {
    let from =
        |v: &Value| -> Option<Vec<f64>> { v.as_array()?.iter().map(Value::as_f64).collect() };
    summary
        .and_then(|s| s.get("kl_per_dim"))
        .and_then(from)
        .or_else(|| {
            records.iter().rev().find_map(|r| {
                r.get("eval")
                    .and_then(|e| e.get("kl_per_dim"))
                    .and_then(from)
            })
        })
}

fn kl_bars(kl: Option<&[f64]>) -> Option<PictureOf> {
    let kl = kl?;
    Some(PictureOf::Bars(Bars {
        title: "KL per latent dimension".into(),
        x_label: "latent dimension".into(),
        y_label: "KL (nats)".into(),
        labels: (0..kl.len()).map(|j| format!("z{j}")).collect(),
        values: kl.to_vec(),
    }))
}

/// The two dimensions to show of `l`: the two with the largest KL, else with the most variance of
/// posterior means (the active-units statistic), in increasing order.
fn two_dims(means: &[f64], l: usize, kl: Option<&[f64]>) -> (usize, usize) {
    let score: Vec<f64> = match kl {
        Some(kl) if kl.len() == l => kl.to_vec(),
        _ => (0..l)
            .map(|j| {
                let col: Vec<f64> = means.iter().skip(j).step_by(l).copied().collect();
                let m = col.iter().sum::<f64>() / col.len().max(1) as f64;
                col.iter().map(|v| (v - m).powi(2)).sum::<f64>()
            })
            .collect(),
    };
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (a, b) = (order[0], order[1]);
    (a.min(b), a.max(b))
}

fn vae_latent(view: &crate::vae::VaeView, kl: Option<&[f64]>) -> Option<PictureOf> {
    let l = view.latent;
    if l < 2 {
        return None;
    }
    let (a, b) = two_dims(&view.means, l, kl);
    let point = |z: &[f64]| (z[a], z[b]);
    let means: Vec<&[f64]> = view.means.chunks(l).collect();
    let groups = match &view.labels {
        Some(labels) if labels.iter().any(Option::is_some) => {
            let k = labels.iter().flatten().max().map_or(0, |m| m + 1);
            let mut groups: Vec<PointGroup> = (0..k)
                .map(|j| PointGroup {
                    name: view
                        .label_names
                        .as_ref()
                        .and_then(|n| n.get(j).cloned())
                        .unwrap_or_else(|| format!("label {j}")),
                    points: Vec::new(),
                })
                .collect();
            let mut unlabelled = Vec::new();
            for (z, label) in means.iter().zip(labels) {
                match label {
                    Some(j) => groups[*j].points.push(point(z)),
                    None => unlabelled.push(point(z)),
                }
            }
            if !unlabelled.is_empty() {
                groups.push(PointGroup {
                    name: "unlabelled".into(),
                    points: unlabelled,
                });
            }
            groups.retain(|g| !g.points.is_empty());
            groups
        }
        _ => vec![PointGroup {
            name: format!("{} rows", view.split),
            points: means.iter().map(|z| point(z)).collect(),
        }],
    };
    Some(PictureOf::Scatter(Scatter {
        x_label: format!("z{a}"),
        y_label: format!("z{b}"),
        panels: vec![
            Panel {
                title: format!("Posterior means ({} rows)", view.split),
                groups,
            },
            Panel {
                title: "Samples from the prior".into(),
                groups: vec![PointGroup {
                    name: "prior".into(),
                    points: view.prior.chunks(l).map(point).collect(),
                }],
            },
        ],
    }))
}

fn linear_latent(dir: &Path) -> CliResult<Option<PictureOf>> {
    let (means, q) = crate::linear::posterior_means(dir)?;
    let points: Vec<(f64, f64)> = if q >= 2 {
        means.chunks(q).map(|z| (z[0], z[1])).collect()
    } else {
        // One factor: its posterior mean against the row's index.
        means
            .iter()
            .enumerate()
            .map(|(i, &z)| (i as f64, z))
            .collect()
    };
    let (x_label, y_label) = if q >= 2 { ("z0", "z1") } else { ("row", "z0") };
    Ok(Some(PictureOf::Scatter(Scatter {
        x_label: x_label.into(),
        y_label: y_label.into(),
        panels: vec![Panel {
            title: "Posterior means of z".into(),
            groups: vec![PointGroup {
                name: "rows".into(),
                points,
            }],
        }],
    })))
}

fn mixture(dir: &Path) -> CliResult<Option<PictureOf>> {
    let view = crate::gmm::view(dir)?;
    let d = view.x.n_cols;
    if d < 2 {
        return Ok(None);
    }
    let projection =
        Projection::of(&view.x.values, d).map_err(|e| CliError::runtime(e.to_string()))?;
    let (x_label, y_label) = projection.labels();
    Ok(Some(PictureOf::Mixture(MixturePlot {
        title: if projection.principal {
            format!("Gaussian mixture ({d} features on their first two principal axes)")
        } else {
            "Gaussian mixture".into()
        },
        x_label,
        y_label,
        points: view
            .x
            .values
            .chunks(d)
            .map(|r| projection.point(r))
            .zip(view.assigned)
            .collect(),
        ellipses: view
            .means
            .iter()
            .zip(&view.covariances)
            .map(|(m, s)| Ellipse {
                centre: projection.point(m),
                covariance: projection.covariance(s),
            })
            .collect(),
    })))
}

/// Image grids when rows are square images (`d` a perfect square of at least 16: 64, 784, ...).
/// A grid of square images about `image_width` screen pixels wide each, or `None` when the rows are
/// not square images.
fn image_grid(panels: &[(&str, &Vec<Vec<f64>>)], image_width: u32) -> Option<PictureOf> {
    let d = panels.first()?.1.first()?.len();
    let side = (d as f64).sqrt().round() as usize;
    if side * side != d || side < 4 {
        return None;
    }
    Some(PictureOf::Images(ImageGrid {
        side,
        image_width,
        columns: 4,
        panels: panels
            .iter()
            .map(|(title, images)| ImagePanel {
                title: title.to_string(),
                images: images.to_vec(),
            })
            .collect(),
    }))
}

/// Text runs: the summary's sentences (greedy samples from the prior; reconstructions and
/// interpolations where the summary holds them) as tables.
fn text_tables(summary: &Value) -> Vec<Table> {
    let mut tables = Vec::new();
    for (key, caption) in [
        ("greedy_samples", "Samples from the prior (greedy decoding)"),
        ("reconstructions", "Reconstructions"),
        ("interpolation", "Interpolation between two sentences"),
    ] {
        if let Some(items) = summary.get(key).and_then(Value::as_array) {
            tables.push(Table {
                caption: caption.into(),
                header: vec!["#".into(), "sentence".into()],
                rows: items
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let text = s.as_str().map_or_else(|| s.to_string(), str::to_string);
                        vec![i.to_string(), text]
                    })
                    .collect(),
            });
        }
    }
    tables
}

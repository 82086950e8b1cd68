//! `report.html`: one self-contained page for a run — its summary figures as a table, its pictures
//! (PNGs inlined as base64 data URIs), tables of text (samples, reconstructions, interpolations) and its
//! resolved config — with no script, no external style sheet, font or image: it opens from disk in any
//! browser, offline.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::base64;
use crate::error::PlotError;

/// A picture of the report: a caption and the PNG file to inline.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub caption: String,
    pub png: std::path::PathBuf,
}

/// A table of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The contents of a run's report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub title: String,
    /// `summary.json` (an object; nested objects are shown with dotted keys).
    pub summary: Option<Value>,
    pub figures: Vec<Figure>,
    pub tables: Vec<Table>,
    /// The resolved `config.toml`, shown as it is.
    pub config: Option<String>,
    /// Notes (pictures that could not be made, and why).
    pub notes: Vec<String>,
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rows `(key, value)` of a JSON object, nested objects flattened with dotted keys, long arrays cut.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.len() > 12 => {
            let head: Vec<String> = items.iter().take(12).map(short).collect();
            out.push((
                prefix.to_string(),
                format!("[{}, ... ({} values)]", head.join(", "), items.len()),
            ));
        }
        Value::Array(items) => {
            let all: Vec<String> = items.iter().map(short).collect();
            out.push((prefix.to_string(), format!("[{}]", all.join(", "))));
        }
        v => out.push((prefix.to_string(), short(v))),
    }
}

/// A JSON value shown briefly: numbers to 6 significant digits, strings unquoted.
fn short(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) {
                format!("{x:.4e}")
            } else {
                format!("{}", (x * 1e6).round() / 1e6)
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => {
            let s = v.to_string();
            if s.len() > 60 {
                format!("{}...", s.chars().take(60).collect::<String>())
            } else {
                s
            }
        }
        v => v.to_string(),
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:1100px;padding:0 1em;color:#222}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;\
border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;\
padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}figure{margin:1em 0}\
figcaption{color:#555;font-size:.9em}img{max-width:100%;height:auto;border:1px solid #eee}\
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}.note{color:#8a5a00}";

impl Report {
    /// The page as HTML.
    pub fn html(&self) -> Result<String, PlotError> {
        let mut h = String::new();
        let title = escape(&self.title);
        // `write!` to a String cannot fail.
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
        );
        if let Some(summary) = &self.summary {
            let mut rows = Vec::new();
            flatten("", summary, &mut rows);
            h.push_str("<h2>Summary</h2>\n<table>\n<tr><th>key</th><th>value</th></tr>\n");
            for (k, v) in rows {
                let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(&k), escape(&v));
            }
            h.push_str("</table>\n");
        }
        if !self.figures.is_empty() {
            h.push_str("<h2>Pictures</h2>\n");
        }
        for f in &self.figures {
            let bytes = std::fs::read(&f.png).map_err(|source| PlotError::Dir {
                path: f.png.clone(),
                source,
            })?;
            let _ = writeln!(
                h,
                "<figure><img alt=\"{alt}\" src=\"data:image/png;base64,{data}\">\
                 <figcaption>{alt}</figcaption></figure>",
                alt = escape(&f.caption),
                data = base64::encode(&bytes)
            );
        }
        for t in &self.tables {
            let _ = writeln!(h, "<h2>{}</h2>\n<table>", escape(&t.caption));
            h.push_str("<tr>");
            for c in &t.header {
                let _ = write!(h, "<th>{}</th>", escape(c));
            }
            h.push_str("</tr>\n");
            for row in &t.rows {
                h.push_str("<tr>");
                for c in row {
                    let _ = write!(h, "<td>{}</td>", escape(c));
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</table>\n");
        }
        if !self.notes.is_empty() {
            h.push_str("<h2>Notes</h2>\n<ul>\n");
            for n in &self.notes {
                let _ = writeln!(h, "<li class=\"note\">{}</li>", escape(n));
            }
            h.push_str("</ul>\n");
        }
        if let Some(config) = &self.config {
            let _ = writeln!(h, "<h2>Resolved config</h2>\n<pre>{}</pre>", escape(config));
        }
        h.push_str("</body>\n</html>\n");
        Ok(h)
    }

    /// Writes the page to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        let html = self.html()?;
        emvae_core::run::write_atomic(path, html.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::render;
    use crate::{Bars, Picture as _};

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn self_contained_page() {
        let dir = std::env::temp_dir().join(format!("emvae-plot-report-{}", std::process::id()));
        let bars = Bars {
            title: "KL".into(),
            x_label: "dim".into(),
            y_label: "nats".into(),
            labels: vec!["z0".into(), "z1".into()],
            values: vec![1.0, 2.0],
        };
        assert_eq!(bars.size(), (640, 380));
        let r = render(&bars, &dir, "kl").unwrap();
        let report = Report {
            title: "run <x>".into(),
            summary: Some(serde_json::json!({
                "model": "vae", "elbo": -32.0625, "eval": {"iw": {"nll": 31.8}},
                "kl_per_dim": (0..20).map(f64::from).collect::<Vec<_>>()
            })),
            figures: vec![Figure {
                caption: "KL per dimension".into(),
                png: r.png.clone(),
            }],
            tables: vec![Table {
                caption: "Samples".into(),
                header: vec!["#".into(), "sentence".into()],
                rows: vec![vec!["0".into(), "the <unk> was good".into()]],
            }],
            config: Some("model = \"vae\"\n[run]\nplot = true\n".into()),
            notes: vec!["no latent map: 1 latent dimension".into()],
        };
        let path = dir.join("report.html");
        report.write(&path).unwrap();
        let html = std::fs::read_to_string(&path).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>run &lt;x&gt;</title>"));
        assert!(html.contains("<td>eval.iw.nll</td><td>31.8</td>"));
        assert!(html.contains("... (20 values)]"));
        assert!(html.contains("data:image/png;base64,iVBORw0KGgo"));
        assert!(html.contains("the &lt;unk&gt; was good"));
        assert!(html.contains("plot = true"));
        // Nothing is fetched: no script, no external reference.
        for banned in ["<script", "http://", "https://", "<link", "@import", "url("] {
            assert!(!html.contains(banned), "report contains {banned}");
        }
        if std::env::var_os("EMVAE_PLOT_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

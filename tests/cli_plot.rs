//! `emvae plot` and the pictures + report.html that `train` writes: on small runs of each model type, the
//! files are PNGs and SVGs of the expected sizes with content and axis labels, the report is one
//! self-contained page, and `[run] plot = false` turns it all off. The report is also opened in headless
//! Chromium where `chromium` is on PATH (skipped with a message elsewhere).

mod common;

use std::path::Path;

use common::{emvae, tempdir};

/// PNG width and height from its IHDR, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: PNG signature",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    // A blank canvas of these sizes compresses to a few hundred bytes.
    assert!(
        b.len() > 1500,
        "{}: {} bytes, nearly blank",
        path.display(),
        b.len()
    );
    (be(16), be(20))
}

/// Checks `dir/plots/name.{png,svg}`: same size, the SVG holds every `texts`.
fn check_picture(dir: &Path, name: &str, texts: &[&str]) {
    let png = dir.join("plots").join(format!("{name}.png"));
    let (w, h) = png_size(&png);
    assert!(w >= 200 && h >= 200, "{name}: {w} x {h}");
    let svg = std::fs::read_to_string(dir.join("plots").join(format!("{name}.svg"))).unwrap();
    assert!(svg.contains("<svg"));
    assert!(svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{h}\"")));
    assert!(svg.trim_end().ends_with("</svg>"));
    for t in texts {
        assert!(svg.contains(t), "{name}.svg lacks {t:?}");
    }
}

fn check_report(dir: &Path, figures: usize) -> String {
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        figures,
        "{html:.400}"
    );
    assert!(html.contains("<h2>Summary</h2>") && html.contains("<h2>Resolved config</h2>"));
    for banned in ["<script", "http://", "https://", "<link", "url("] {
        assert!(!html.contains(banned), "report holds {banned}");
    }
    chromium_check(&dir.join("report.html"));
    html
}

/// Opens the report in headless Chromium when it is installed: it must load and log no console error.
fn chromium_check(report: &Path) {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
    else {
        eprintln!("chromium check skipped: no chromium on PATH");
        return;
    };
    let url = format!("file://{}", report.canonicalize().unwrap().display());
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains("<h1>"),
        "chromium did not render the report: {log}"
    );
    assert!(!log.contains("CONSOLE"), "console messages: {log}");
}

fn train(dir: &Path, config: &str, extra: &[&str]) {
    std::fs::write(dir.join("c.toml"), config).unwrap();
    let mut args = vec!["train", "--config", "c.toml", "--out", "run"];
    args.extend_from_slice(extra);
    let out = emvae(dir, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

const GMM: &str = "model = \"gmm\"\n[data.synthetic]\nn_samples = 600\nn_features = 2\nn_components = 3\n\
                   [gmm]\nn_components = 3\nn_init = 2\n";

#[test]
fn train_writes_pictures_and_report_for_a_mixture() {
    let t = tempdir();
    train(t.path(), GMM, &[]);
    let run = t.path().join("run");
    check_picture(
        &run,
        "curves",
        &["EM iteration", "log-likelihood", "restart 1"],
    );
    check_picture(&run, "mixture", &["x0", "x1", "component 2"]);
    let html = check_report(&run, 2);
    assert!(html.contains("n_components"));
}

#[test]
fn a_component_sweep_draws_bic_and_aic_against_the_number_of_components() {
    let t = tempdir();
    let config = GMM.replace(
        "n_components = 3\nn_init = 2\n",
        "n_init = 2\n[gmm.select]\nn_components = [1, 2, 3, 4, 5]\ncovariance_types = [\"full\", \"diag\"]\n",
    );
    train(t.path(), &config, &[]);
    let run = t.path().join("run");
    check_picture(
        &run,
        "selection",
        &[
            "number of components",
            "BIC",
            "AIC",
            "full",
            "diag",
            "selected: 3 components",
        ],
    );
    check_picture(&run, "mixture", &["component 2"]);
    check_report(&run, 3);
}

/// A Bernoulli mixture on 8 x 8 binary images: its curves, and each component's probabilities drawn as
/// an image.
#[test]
fn bernoulli_mixture_components_as_images() {
    let t = tempdir();
    train(
        t.path(),
        "model = \"bernoulli_mixture\"\n[data]\nbinarize = { threshold = 0.0 }\n[data.synthetic]\n\
         n_samples = 1200\nn_features = 64\nn_components = 6\nseparation = 6.0\n\
         [bernoulli_mixture]\nn_components = 6\nn_init = 2\n",
        &[],
    );
    let run = t.path().join("run");
    check_picture(&run, "curves", &["EM iteration", "restart 1"]);
    check_picture(&run, "components", &["component probabilities"]);
    check_report(&run, 2);
}

#[test]
fn mixture_of_three_features_on_principal_axes_and_plot_out() {
    let t = tempdir();
    train(
        t.path(),
        &GMM.replace("n_features = 2", "n_features = 3"),
        &[],
    );
    let out = emvae(t.path(), &["plot", "--run", "run", "--out", "figs"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("figs/report.html"), "{}", out.stdout);
    let svg = std::fs::read_to_string(t.path().join("figs/mixture.svg")).unwrap();
    assert!(svg.contains("principal axis 1") && svg.contains("principal axis 2"));
    assert!(t.path().join("figs/report.html").exists());
}

#[test]
fn plot_false_writes_nothing_and_plot_makes_it_later() {
    let t = tempdir();
    train(t.path(), &format!("{GMM}[run]\nplot = false\n"), &[]);
    let run = t.path().join("run");
    assert!(!run.join("plots").exists() && !run.join("report.html").exists());
    let out = emvae(t.path(), &["plot", "--run", "run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    check_picture(&run, "curves", &["EM iteration"]);
    check_report(&run, 2);
    // Not a run directory: a user error.
    let out = emvae(t.path(), &["plot", "--run", "nowhere"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn vae_latent_map_kl_and_image_grids() {
    let t = tempdir();
    let config = "model = \"vae\"\n[data]\ntest_rows = 100\n[data.synthetic]\nn_samples = 500\n\
                  n_features = 16\nn_components = 3\nlabel_fraction = 1.0\n\
                  [vae.encoder]\nsizes = [16, 32, 3]\n[vae.decoder]\nsizes = [3, 32, 16]\n\
                  [vae.likelihood]\nkind = \"gaussian\"\n[vae.train]\nepochs = 3\nbatch_size = 50\n\
                  [vae.eval]\nevery = 1\niw_samples = 3\nfinal_iw_samples = 5\n";
    train(t.path(), config, &[]);
    let run = t.path().join("run");
    check_picture(
        &run,
        "curves",
        &[
            "optimisation step",
            "ELBO (nats)",
            "held-out",
            "learning rate",
        ],
    );
    check_picture(
        &run,
        "latent",
        &["Samples from the prior", "label 0", "label 2"],
    );
    check_picture(&run, "reconstructions", &["inputs", "reconstructions"]);
    check_picture(&run, "samples", &["samples from the prior"]);
    let kl = run.join("plots/kl.svg").exists();
    check_report(&run, 4 + kl as usize);
}

#[test]
fn linear_gaussian_and_hmm_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (config, pictures) in [
        ("configs/ppca.toml", &["curves", "latent"][..]),
        ("configs/hmm-gaussian.toml", &["curves"][..]),
    ] {
        let t = tempdir();
        let config = root.join(config);
        let out = emvae(
            t.path(),
            &[
                "train",
                "--config",
                config.to_str().unwrap(),
                "--out",
                "run",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let run = t.path().join("run");
        for p in pictures {
            check_picture(&run, p, &[]);
        }
        check_report(&run, pictures.len());
    }
}

#[test]
fn text_run_latent_map_kl_bars_and_sentence_tables() {
    let t = tempdir();
    let config = "model = \"text\"\n[text]\nlatent = 4\nembedding = 16\n[text.generated]\n\
                  n_sentences = 300\nn_held_out = 60\n[text.encoder]\ncell = \"lstm\"\nhidden = 16\n\
                  [text.decoder]\ncell = \"lstm\"\nhidden = 16\n[text.train]\nbatch_size = 32\nepochs = 2\n\
                  [text.eval]\niw_samples = 3\nfinal_iw_samples = 5\n";
    train(t.path(), config, &[]);
    let run = t.path().join("run");
    check_picture(&run, "curves", &["KL weight", "optimisation step"]);
    check_picture(&run, "kl", &["latent dimension", "z3"]);
    // The generated corpus is labelled `sentiment-topic`: the latent map's legend names the labels.
    check_picture(
        &run,
        "latent",
        &["Posterior means (held-out rows)", "neg-food", "pos-sport"],
    );
    let html = check_report(&run, 3);
    for table in [
        "Samples from the prior (greedy decoding)",
        "Reconstructions",
        "Interpolation between two sentences",
    ] {
        assert!(html.contains(table), "{table}");
    }
    assert!(
        html.contains(" =&gt; ") || html.contains(" => "),
        "input => output rows"
    );
}

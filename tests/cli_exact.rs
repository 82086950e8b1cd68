//! The exact-EM family through the `emvae` binary: every model trains, evaluates, predicts or encodes,
//! and samples from a run written by an earlier process; pPCA reaches its closed form through the CLI;
//! a stopped and resumed fit ends where an uninterrupted one ends; online EM streams a file; and a table
//! of bad inputs gives clear errors, exit 2, no panic.

use std::path::{Path, PathBuf};

mod common;

use common::{emvae, tempdir};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn ppca_data() -> String {
    format!("{}/data/ppca.csv", env!("CARGO_MANIFEST_DIR"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(json).collect()
}

/// Trains `config` into `out` and returns the printed summary.
fn train(dir: &Path, config: &str, out: &str) -> serde_json::Value {
    write(dir, &format!("{out}.toml"), config);
    let r = emvae(
        dir,
        &[
            "train",
            "--config",
            &format!("{out}.toml"),
            "--out",
            out,
            "-q",
        ],
    );
    assert_eq!(r.code, 0, "{out}: {}", r.stderr);
    json(&r.stdout)
}

#[test]
fn ppca_and_fa_train_encode_sample_and_reach_the_closed_form() {
    let dir = tempdir();
    let data = ppca_data();
    let mut iterations = Vec::new();
    for acceleration in ["none", "squarem"] {
        let out = format!("ppca-{acceleration}");
        let s = train(
            dir.path(),
            &format!(
                "model = \"ppca\"\n[data]\npath = \"{data}\"\n[ppca]\nn_components = 3\ninit = \"random\"\n\
                 acceleration = \"{acceleration}\"\ntol = 1e-12\nmax_iter = 100000\n[run]\ncheckpoint_every = 1000\n"
            ),
            &out,
        );
        // The closed-form maximum of ../shared/reference/ppca_reference.py for these data.
        let ll = s["log_likelihood"].as_f64().unwrap();
        assert!(
            (ll - -11.473859165999661).abs() < 1e-6,
            "{acceleration}: {ll}"
        );
        let sigma2 = s["noise_variance"][0].as_f64().unwrap();
        assert!((sigma2 - 0.24636148208627273).abs() < 1e-6, "{sigma2}");
        iterations.push(s["n_iter"].as_u64().unwrap());
    }
    assert!(
        iterations[1] * 3 < iterations[0],
        "SQUAREM took {} iterations, plain EM {}",
        iterations[1],
        iterations[0]
    );

    let fa = train(
        dir.path(),
        &format!("model = \"fa\"\n[data]\npath = \"{data}\"\n[fa]\nn_components = 3\n"),
        "fa",
    );
    assert_eq!(fa["noise_variance"].as_array().unwrap().len(), 8);
    // FA has more freedom than pPCA: its maximum is at least as high.
    assert!(fa["log_likelihood"].as_f64().unwrap() >= -11.473859166 - 1e-9);

    for run in ["ppca-squarem", "fa"] {
        let e = emvae(dir.path(), &["eval", "--run", run]);
        assert_eq!(e.code, 0, "{}", e.stderr);
        assert!(json(&e.stdout)["log_likelihood"].as_f64().unwrap() > -11.48);
        let codes = emvae(dir.path(), &["encode", "--run", run]);
        assert_eq!(codes.code, 0, "{}", codes.stderr);
        let codes = lines(&codes.stdout);
        assert_eq!(codes.len(), 2000);
        assert_eq!(codes[0]["z"].as_array().unwrap().len(), 3);
        let draws = emvae(
            dir.path(),
            &["sample", "--run", run, "-n", "4", "--seed", "3"],
        );
        assert_eq!(draws.code, 0, "{}", draws.stderr);
        let draws = lines(&draws.stdout);
        assert_eq!(draws.len(), 4);
        assert_eq!(draws[0]["x"].as_array().unwrap().len(), 8);
        let refused = emvae(dir.path(), &["predict", "--run", run]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        let refused = emvae(dir.path(), &["decode", "--run", run, "--z", "x.csv"]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
    }
}

#[test]
fn a_stopped_and_resumed_ppca_fit_ends_where_an_uninterrupted_one_ends() {
    let dir = tempdir();
    let config = format!(
        "model = \"ppca\"\n[data]\npath = \"{}\"\n[ppca]\nn_components = 2\ninit = \"random\"\nn_init = 2\n\
         acceleration = \"squarem\"\ntol = 1e-9\n",
        ppca_data()
    );
    write(dir.path(), "c.toml", &config);
    let whole = emvae(
        dir.path(),
        &["train", "--config", "c.toml", "--out", "whole", "-q"],
    );
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let first = emvae(
        dir.path(),
        &[
            "train",
            "--config",
            "c.toml",
            "--out",
            "parts",
            "-q",
            "--stop-after",
            "7",
        ],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(!dir.path().join("parts/model.json").exists());
    let rest = emvae(dir.path(), &["train", "--out", "parts", "--resume", "-q"]);
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("whole/model.json"), read("parts/model.json"));
}

#[test]
fn discrete_mixtures_train_predict_and_sample() {
    let dir = tempdir();
    let b = train(
        dir.path(),
        "model = \"bernoulli_mixture\"\n[data]\nbinarize = { threshold = 0.0 }\n[data.synthetic]\nn_samples = 600\n\
         n_features = 12\nn_components = 3\nseparation = 8.0\nseed = 2\n[bernoulli_mixture]\nn_components = 3\n\
         n_init = 2\nalpha = 0.01\n",
        "bern",
    );
    assert!(b["log_likelihood"].as_f64().unwrap() < 0.0);
    let p = emvae(dir.path(), &["predict", "--run", "bern"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let rows = lines(&p.stdout);
    assert_eq!(rows.len(), 600);
    let sum: f64 = rows[0]["responsibilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-12);
    let s = emvae(dir.path(), &["sample", "--run", "bern", "-n", "5"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    for row in lines(&s.stdout) {
        assert!(
            row["x"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v.as_f64() == Some(0.0) || v.as_f64() == Some(1.0))
        );
    }

    // The mixture of unigrams on the generated corpus, scored as the text models are.
    let m = train(
        dir.path(),
        "model = \"multinomial_mixture\"\n[corpus.generated]\nn_sentences = 800\nn_held_out = 100\nseed = 4\n\
         [multinomial_mixture]\nn_components = 4\n",
        "unigrams",
    );
    assert!(dir.path().join("unigrams/vocab.json").exists());
    let (train_ppl, test_ppl) = (
        m["train"]["perplexity"].as_f64().unwrap(),
        m["test"]["perplexity"].as_f64().unwrap(),
    );
    assert!(train_ppl > 1.0 && test_ppl > 1.0, "{m}");
    assert_eq!(m["test"]["sentences"].as_u64(), Some(100));
    let corpus = write(
        dir.path(),
        "held.txt",
        "the soup was awful\nthe film was wonderful\n",
    );
    let e = emvae(
        dir.path(),
        &[
            "eval",
            "--run",
            "unigrams",
            "--data",
            corpus.to_str().unwrap(),
        ],
    );
    assert_eq!(e.code, 0, "{}", e.stderr);
    let e = json(&e.stdout);
    assert_eq!(e["text"]["sentences"].as_u64(), Some(2));
    let s = emvae(
        dir.path(),
        &["sample", "--run", "unigrams", "-n", "3", "--seed", "1"],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(lines(&s.stdout).len(), 3);
}

#[test]
fn online_em_streams_a_file_and_matches_batch_em() {
    let dir = tempdir();
    let g = emvae(
        dir.path(),
        &[
            "generate",
            "--n-samples",
            "60000",
            "--n-features",
            "3",
            "--n-components",
            "3",
            "--separation",
            "6",
            "--seed",
            "5",
            "--output",
            "big.csv",
        ],
    );
    assert_eq!(g.code, 0, "{}", g.stderr);
    let batch = train(
        dir.path(),
        "model = \"gmm\"\n[data]\npath = \"big.csv\"\n[gmm]\nn_components = 3\ntol = 1e-6\n",
        "batch",
    );
    let online = train(
        dir.path(),
        "model = \"gmm\"\n[data]\npath = \"big.csv\"\n[gmm]\nn_components = 3\n\
         [gmm.online]\nbatch_size = 2000\nburn_in = 3\nepochs = 2\n",
        "online",
    );
    assert_eq!(online["rows_seen"].as_u64(), Some(120_000));
    let e = emvae(dir.path(), &["eval", "--run", "online"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let online_ll = json(&e.stdout)["log_likelihood"].as_f64().unwrap();
    let batch_ll = batch["log_likelihood"].as_f64().unwrap();
    assert!(
        (online_ll - batch_ll).abs() < 0.01,
        "online {online_ll} batch {batch_ll}"
    );
    // The discrete mixtures stream the same way: binary rows (the signs of the generated ones).
    let signs: String = std::fs::read_to_string(dir.path().join("big.csv"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                let cells: Vec<&str> = l
                    .split(',')
                    .map(|v| {
                        if v.parse::<f64>().unwrap_or(0.0) > 0.0 {
                            "1"
                        } else {
                            "0"
                        }
                    })
                    .collect();
                format!("{}\n", cells.join(","))
            }
        })
        .collect();
    write(dir.path(), "signs.csv", &signs);
    let bern = train(
        dir.path(),
        "model = \"bernoulli_mixture\"\n[data]\npath = \"signs.csv\"\n[bernoulli_mixture]\nn_components = 3\n\
         [bernoulli_mixture.online]\nbatch_size = 5000\n",
        "bern-online",
    );
    assert_eq!(bern["rows_seen"].as_u64(), Some(60_000));
    let e = emvae(dir.path(), &["eval", "--run", "bern-online"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let stop = emvae(
        dir.path(),
        &[
            "train",
            "--config",
            "online.toml",
            "--out",
            "o2",
            "--stop-after",
            "3",
        ],
    );
    assert_eq!(stop.code, 2, "{}", stop.stderr);
    assert!(stop.stderr.contains("max_batches"), "{}", stop.stderr);
}

#[test]
fn hmms_train_on_rows_and_on_a_corpus_predict_and_sample() {
    let dir = tempdir();
    // Two regimes that persist: rows near -3 for a while, then near +3.
    let mut rows = String::from("a,b\n");
    let mut lengths = String::new();
    for s in 0..6 {
        let len = 30 + 7 * s;
        for t in 0..len {
            let m = if (t / 10) % 2 == 0 { -3.0 } else { 3.0 };
            let e = ((s * 31 + t * 17) % 13) as f64 / 13.0 - 0.5;
            rows += &format!("{},{}\n", m + e, m - e);
        }
        lengths += &format!("{len}\n");
    }
    write(dir.path(), "obs.csv", &rows);
    write(dir.path(), "lengths.txt", &lengths);
    let s = train(
        dir.path(),
        "model = \"hmm\"\n[data]\npath = \"obs.csv\"\n[sequences]\nlengths_path = \"lengths.txt\"\n\
         [hmm]\nn_states = 2\ncovariance_type = \"diag\"\nmax_iter = 50\n",
        "hmm",
    );
    assert_eq!(s["n_sequences"].as_u64(), Some(6));
    let p = emvae(dir.path(), &["predict", "--run", "hmm"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let paths = lines(&p.stdout);
    assert_eq!(paths.len(), 6);
    // The regimes are recovered: the state changes where the mean does, every 10 steps.
    let states: Vec<u64> = paths[0]["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(states.len(), 30);
    for t in 1..30 {
        assert_eq!(states[t] != states[t - 1], t % 10 == 0, "{states:?}");
    }
    let e = emvae(dir.path(), &["eval", "--run", "hmm"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let draws = emvae(
        dir.path(),
        &["sample", "--run", "hmm", "-n", "2", "--length", "7"],
    );
    assert_eq!(draws.code, 0, "{}", draws.stderr);
    let draws = lines(&draws.stdout);
    assert_eq!(draws[1]["x"].as_array().unwrap().len(), 7);

    let t = train(
        dir.path(),
        "model = \"hmm\"\n[corpus.generated]\nn_sentences = 600\nn_held_out = 60\nseed = 2\n\
         [hmm]\nn_states = 6\nemission = \"categorical\"\nmax_iter = 20\n",
        "hmm-text",
    );
    assert!(t["test"]["perplexity"].as_f64().unwrap() > 1.0, "{t}");
    let s = emvae(
        dir.path(),
        &["sample", "--run", "hmm-text", "-n", "2", "--seed", "4"],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    for row in lines(&s.stdout) {
        let words = row["text"].as_str().unwrap().split_whitespace().count();
        // The states run to the sentence's `<eos>`.
        assert_eq!(row["states"].as_array().unwrap().len(), words + 1, "{row}");
    }
}

/// (name, config, data file text, fragments of the message).
type BadInput = (&'static str, String, &'static str, Vec<&'static str>);

fn bad_inputs() -> Vec<BadInput> {
    let ppca = |extra: &str| format!("model = \"ppca\"\n[data]\npath = \"d.csv\"\n[ppca]\n{extra}");
    let bern = "model = \"bernoulli_mixture\"\n[data]\npath = \"d.csv\"\n[bernoulli_mixture]\nn_components = 2\n";
    let multi = "model = \"multinomial_mixture\"\n[data]\npath = \"d.csv\"\n[multinomial_mixture]\nn_components = 2\n";
    let rows = "a,b,c\n0.1,0.2,0.3\n1.0,2.0,3.5\n0.5,0.1,0.9\n";
    vec![
        ("more latent dimensions than features", ppca("n_components = 3\n"), rows,
         vec!["n_components", "3"]),
        ("no latent dimension", ppca("n_components = 0\n"), rows, vec!["ppca.n_components"]),
        ("fa noise in a ppca table", ppca("n_components = 1\nnoise = \"diagonal\"\n"), rows,
         vec!["ppca.noise", "model = \"fa\""]),
        ("squarem misspelt", ppca("n_components = 1\nacceleration = \"squareem\"\n"), rows,
         vec!["ppca.acceleration"]),
        ("binary data with other values", bern.to_string(), "a,b\n0,1\n1,0.5\n",
         vec!["d.csv", "not binary"]),
        ("negative counts", multi.to_string(), "a,b\n1,2\n3,-1\n", vec!["d.csv", "negative"]),
        ("fractional counts", multi.to_string(), "a,b\n1,2\n3,1.5\n", vec!["d.csv"]),
        ("stochastic binarisation for a mixture",
         "model = \"bernoulli_mixture\"\n[data]\npath = \"d.csv\"\nbinarize = { stochastic = true }\n\
          [bernoulli_mixture]\nn_components = 2\n".into(), "a,b\n0,1\n1,0\n",
         vec!["data.binarize.stochastic"]),
        ("corpus without a corpus",
         "model = \"multinomial_mixture\"\n[corpus]\n[multinomial_mixture]\nn_components = 2\n".into(), "",
         vec!["data.path", "[corpus.generated]"]),
        ("corpus for pPCA", format!("{}[corpus]\n", ppca("n_components = 1\n")), rows, vec!["corpus"]),
        ("online with labels",
         "model = \"gmm\"\n[data]\npath = \"d.csv\"\nlabel_column = \"c\"\n[gmm]\nn_components = 2\n[gmm.online]\n"
             .into(), rows, vec!["data.label_column", "online"]),
        ("lengths that do not sum to the rows",
         "model = \"hmm\"\n[data]\npath = \"d.csv\"\n[sequences]\nlengths_path = \"l.txt\"\n[hmm]\nn_states = 2\n"
             .into(), rows, vec!["l.txt"]),
        ("an empty sequence",
         "model = \"hmm\"\n[data]\npath = \"d.csv\"\n[sequences]\nlengths_path = \"zero.txt\"\n[hmm]\nn_states = 2\n"
             .into(), rows, vec!["zero.txt:2", "at least 1"]),
        ("a symbol outside the alphabet",
         "model = \"hmm\"\n[data]\npath = \"s.csv\"\n[sequences]\nn_symbols = 3\n[hmm]\nn_states = 2\n\
          emission = \"categorical\"\n".into(), rows, vec!["s.csv", "5"]),
        ("gaussian emissions on a corpus",
         "model = \"hmm\"\n[corpus.generated]\nn_sentences = 10\n[hmm]\nn_states = 2\n".into(), rows,
         vec!["hmm.emission", "categorical"]),
        ("online step exponent", "model = \"gmm\"\n[data]\npath = \"d.csv\"\n[gmm]\nn_components = 2\n\
          [gmm.online]\nstep_exponent = 0.4\n".into(), rows, vec!["gmm.online.step_exponent"]),
    ]
}

#[test]
fn bad_inputs_give_clear_errors_and_exit_2() {
    let dir = tempdir();
    write(dir.path(), "l.txt", "2\n2\n");
    write(dir.path(), "zero.txt", "2\n0\n1\n");
    write(dir.path(), "s.csv", "0\n1\n5\n2\n");
    for (name, config, data, needles) in bad_inputs() {
        write(dir.path(), "c.toml", &config);
        write(dir.path(), "d.csv", data);
        let r = emvae(
            dir.path(),
            &["train", "--config", "c.toml", "--out", "r", "--force"],
        );
        assert_eq!(r.code, 2, "{name}: exit {}: {}", r.code, r.stderr);
        assert!(!r.stderr.contains("panicked"), "{name}: {}", r.stderr);
        for needle in needles {
            assert!(
                r.stderr.contains(needle),
                "{name}: `{needle}` not in {}",
                r.stderr
            );
        }
    }
}

//! Kill tests: a Gaussian-mixture run and a VAE run killed with SIGKILL at 20 moments each (each attempt
//! runs for a random 1-4% of the run's duration, so some kills land inside checkpoint writes), each time resumed with
//! `--resume`; the final model is bit-identical to an uninterrupted run's, and every kill leaves a run
//! directory that the next command reads (the resume never fails).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use burn::tensor::Device;
use common::{emvae, tempdir};
use emvae::vae::Vae;
use emvae::vae::config::VaeConfig;
use emvae::vae::train::{load_model, parameter_values};

const KILLS: usize = 20;

/// xorshift: the kill moments are reproducible.
struct Moments(u64);

impl Moments {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Starts `emvae args` in `dir` and kills it with SIGKILL after `after` (or lets it finish first).
/// Returns whether it was killed.
fn run_and_kill(dir: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emvae"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emvae starts");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success(),
                "emvae {args:?} failed on its own: {status}"
            );
            return false;
        }
        if start.elapsed() >= after {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Trains `config` uninterrupted into `clean/`, then into `killed/` with `KILLS` kills, resuming after
/// each; returns both runs' `model_file` bytes and the number of kills that landed.
fn killed_and_clean(
    dir: &Path,
    config: &str,
    model_file: &str,
    seed: u64,
) -> (Vec<u8>, Vec<u8>, usize) {
    let t0 = Instant::now();
    let clean = emvae(dir, &["train", "--config", config, "--out", "clean"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    let duration = t0.elapsed();
    let mut moments = Moments(seed);
    let mut landed = 0;
    let mut started = false;
    for _ in 0..KILLS {
        // Each attempt runs for 1% to 4% of an uninterrupted run (start-up included), so that all the
        // kills land before the run is done.
        let after = duration.mul_f64(0.01 + 0.03 * moments.next_fraction());
        let args: Vec<&str> = if started {
            vec!["train", "--config", config, "--out", "killed", "--resume"]
        } else {
            vec!["train", "--config", config, "--out", "killed"]
        };
        let killed = run_and_kill(dir, &args, after);
        // A first run killed before it wrote its config starts again as a new run.
        started |= dir.join("killed").join("config.toml").exists();
        landed += usize::from(killed);
        if !killed {
            break;
        }
    }
    let args: Vec<&str> = if started {
        vec!["train", "--config", config, "--out", "killed", "--resume"]
    } else {
        vec!["train", "--config", config, "--out", "killed"]
    };
    let last = emvae(dir, &args);
    assert_eq!(last.code, 0, "the last resume: {}", last.stderr);
    let read = |run: &str| std::fs::read(dir.join(run).join(model_file)).expect("a model");
    (read("clean"), read("killed"), landed)
}

#[test]
fn gmm_killed_20_times_ends_bit_identical() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::write(
        d.join("gmm.toml"),
        "model = \"gmm\"\nseed = 4\n[data.synthetic]\nn_samples = 40000\nn_features = 6\nn_components = 6\n\
         separation = 1.0\nseed = 2\n[gmm]\nn_components = 6\ncovariance_type = \"full\"\ntol = 0.0\n\
         max_iter = 150\nn_init = 2\n",
    )
    .unwrap();
    let (clean, killed, landed) = killed_and_clean(d, "gmm.toml", "model.json", 0x9e37_79b9);
    assert_eq!(landed, KILLS, "every kill landed before the end");
    assert!(
        clean == killed,
        "a killed and resumed fit ends where an uninterrupted one ends"
    );
}

#[test]
fn vae_killed_20_times_ends_bit_identical() {
    let dir = tempdir();
    let d = dir.path();
    let mut csv = String::new();
    let mut state: u64 = 11;
    for i in 0..600usize {
        let row: Vec<&str> = (0..16)
            .map(|j| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let flip = (state >> 33).is_multiple_of(10);
                if ((i % 3) + j).is_multiple_of(3) ^ flip {
                    "1"
                } else {
                    "0"
                }
            })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    std::fs::write(d.join("x.csv"), csv).unwrap();
    let vae = "[encoder]\nsizes = [16, 64, 3]\n[decoder]\nsizes = [3, 64, 16]\n\
               [likelihood]\nkind = \"bernoulli\"\n[train]\nepochs = 60\nbatch_size = 16\nlr = 0.003\n\
               [eval]\nevery = 1\niw_samples = 5\nfinal_iw_samples = 20\n";
    let run_config = format!(
        "model = \"vae\"\nseed = 5\n[data]\npath = \"x.csv\"\n{}",
        vae.replace("\n[", "\n[vae.")
            .replacen("[encoder]", "[vae.encoder]", 1)
    );
    std::fs::write(d.join("vae.toml"), run_config).unwrap();
    let (clean, killed, landed) = killed_and_clean(d, "vae.toml", "model.bpk", 0x5851_f42d);
    assert_eq!(landed, KILLS, "every kill landed before the end");
    // burnpack files also record parameter ids, drawn per process: compare the parameters' values.
    let config: VaeConfig = toml::from_str(vae).unwrap();
    let values = |bytes: &[u8]| {
        let device = Device::flex().autodiff();
        let model = load_model(Vae::new(&config, 0, &device), bytes).expect("a readable model");
        parameter_values(&model)
    };
    assert!(
        values(&clean) == values(&killed),
        "a killed and resumed run ends where an uninterrupted one ends"
    );
}

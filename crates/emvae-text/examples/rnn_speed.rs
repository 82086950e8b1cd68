//! Speed probe: forward + backward time of one batch through burn's `Lstm`/`Gru` and through
//! [`FusedLstm`]/[`FusedGru`] (and [`Rnn`] stacks with ragged lengths) on `Device::flex().autodiff()`.
//!
//! `cargo run --release -p emvae-text --example rnn_speed [rounds]`
//!
//! Sizes (batch, length, input, hidden): (32, 22, 288, 256), the sentence VAE's, then (32, 50, 32, 128),
//! a small model where per-op overhead weighs more than the matmuls. The loss is `sum(outputs)`; one
//! "step" is forward + backward of one batch, inputs drawn fresh each time. The candidates run
//! round-robin (one call each per round, after two warm-up rounds) so that machine load hits them alike;
//! the table gives the minimum and median milliseconds per step. Set `RAYON_NUM_THREADS` to vary the
//! threads.

use std::time::Instant;

use burn::nn::{GruConfig, LstmConfig};
use burn::tensor::{Device, Distribution, Tensor};
use emvae_core::rng::Rng;
use emvae_text::rnn::{CellKind, FusedGru, FusedLstm, Rnn};
use rand::SeedableRng;

type Forward<'a> = Box<dyn Fn(Tensor<3>) -> Tensor<3> + 'a>;

/// Forward and backward of `sum(forward(x))` for a fresh input `x: shape` that requires a gradient.
fn train_step(device: &Device, shape: [usize; 3], forward: &dyn Fn(Tensor<3>) -> Tensor<3>) {
    let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad();
    let grads = forward(x.clone()).sum().backward();
    let g = x.grad(&grads).map(|g| g.into_data());
    assert!(g.is_some(), "the input got a gradient");
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    for (batch, len, d_in, hidden) in [(32, 22, 288, 256), (32, 50, 32, 128)] {
        compare(rounds, batch, len, d_in, hidden);
    }
}

/// Times every candidate on inputs `[batch, len, d_in]` with `hidden` units.
fn compare(rounds: usize, batch: usize, len: usize, d_in: usize, hidden: usize) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut rng = Rng::seed_from_u64(0);
    let lengths: Vec<usize> = (0..batch).map(|r| len - r % 8).collect();

    let lstm = LstmConfig::new(d_in, hidden, true).init(&device);
    let fused_lstm = FusedLstm::new(d_in, hidden, &mut rng, &device);
    let gru = GruConfig::new(d_in, hidden, true).init(&device);
    let fused_gru = FusedGru::new(d_in, hidden, &mut rng, &device);
    let stacks: Vec<(String, Rnn)> = [CellKind::Lstm, CellKind::Gru]
        .into_iter()
        .flat_map(|kind| [false, true].map(|bidir| (kind, bidir)))
        .map(|(kind, bidir)| {
            let name = format!("Rnn {kind:?}{} ragged", if bidir { " bidir" } else { "" });
            let rnn = Rnn::new(kind, d_in, hidden, 1, bidir, &mut rng, &device);
            (name, rnn)
        })
        .collect();

    let mut candidates: Vec<(String, Forward)> = vec![
        ("burn Lstm".into(), Box::new(|x| lstm.forward(x, None).0)),
        (
            "FusedLstm".into(),
            Box::new(|x| fused_lstm.forward(x, None, None).0),
        ),
        ("burn Gru".into(), Box::new(|x| gru.forward(x, None))),
        (
            "FusedGru".into(),
            Box::new(|x| fused_gru.forward(x, None, None).0),
        ),
    ];
    for (name, rnn) in &stacks {
        let lengths = &lengths;
        let forward: Forward = Box::new(move |x| rnn.forward(x, Some(lengths), None).0);
        candidates.push((name.clone(), forward));
    }

    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for round in 0..rounds + 2 {
        for (k, (_, forward)) in candidates.iter().enumerate() {
            let start = Instant::now();
            train_step(&device, [batch, len, d_in], forward.as_ref());
            if round >= 2 {
                ms[k].push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    println!(
        "B={batch} T={len} F={d_in} H={hidden}: forward + backward per batch, {rounds} rounds"
    );
    println!("{:<26} {:>9} {:>9}", "", "min ms", "median ms");
    for ((name, _), mut v) in candidates.iter().zip(ms) {
        v.sort_by(f64::total_cmp);
        println!("{name:<26} {:9.2} {:9.2}", v[0], v[v.len() / 2]);
    }
}

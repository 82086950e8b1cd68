//! Fused recurrent cells (LSTM and GRU) and a multi-layer, optionally bidirectional stack of them.
//!
//! burn's own `Lstm` runs eight small matmuls per step (one `Linear` per gate for the input and for the
//! hidden state). The cells here follow PyTorch's layout instead (`G = 4` gates for the LSTM, 3 for the
//! GRU): the input projection of the whole sequence is one matmul `[B*T, F] x [F, G*H]`, and each step
//! does one matmul `h [B, H] x W_hh [H, G*H]` followed by gate slices and element-wise ops (for small
//! inputs, `3 F < 2 B log2 T`, one matmul `[x_t, h, 1] x [W_ih; W_hh; b]` per step is cheaper; see
//! `project_per_step`). `tanh` is evaluated as `2 σ(2x) - 1` (see `doubled_block`). Everything is
//! composed of ordinary tensor ops, so it runs and differentiates on every backend (autodiff included).
//! Where the edge gives host kernels ([`Rnn::with_kernels`]), an LSTM's recurrence instead runs as one
//! operation with its own backward pass ([`crate::lstm_kernel`]); the input projection stays a tensor op.
//!
//! Measured on flex with autodiff (2 vCPUs, forward + backward of one batch, `examples/rnn_speed.rs`):
//! at B = 32, T = 22, F = 288, H = 256 the LSTM takes about 70 ms against 87 ms for burn's `Lstm`, the
//! GRU 54 ms against 63 ms; at B = 32, T = 50, F = 32, H = 128, 37 ms against 58 ms and 35 ms against
//! 41 ms. The matmuls themselves take about two thirds of the time at the larger size.
//!
//! Weights are laid out as PyTorch's transposed (`x W`, not `W x`), with PyTorch's gate order, so
//! importing `weight_ih_l0` of a `torch.nn.LSTM` is `w_ih = weight_ih_l0.T` and `bias = bias_ih_l0 +
//! bias_hh_l0`; for `torch.nn.GRU`, `w_ih = weight_ih_l0.T`, `b_ih = bias_ih_l0`, `b_hh = bias_hh_l0`.
//!
//! Variable-length batches: [`Rnn::forward`] takes per-row lengths; the state is frozen past each
//! row's end, so the final states are those after each row's last real token, outputs at padded
//! positions are zero, and the backward direction of a bidirectional layer reads each row reversed
//! within its own length (padding stays at the end). This gives what PyTorch's packed sequences give.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use emvae_core::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::lstm_kernel::{HostKernels, LstmSequenceFn};

mod gru;
mod lstm;
mod steps;
#[cfg(test)]
pub(crate) mod test_util;

pub use gru::FusedGru;
pub use lstm::FusedLstm;

/// Which recurrent cell a stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Long short-term memory: hidden state `h` and cell state `c`.
    Lstm,
    /// Gated recurrent unit (PyTorch's variant, reset gate applied after the hidden matmul).
    Gru,
}

impl CellKind {
    /// Number of gate blocks of width `H` in the fused weight matrices (4 for LSTM, 3 for GRU).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// The recurrent state of one cell: `h: [B, H]`, and for an LSTM the cell state `c: [B, H]`
/// (`None` for a GRU; an LSTM reads `None` as zeros).
#[derive(Debug, Clone)]
pub struct RnnState {
    pub h: Tensor<2>,
    pub c: Option<Tensor<2>>,
}

impl RnnState {
    /// The zero state of a `kind` cell for `batch` rows of width `hidden`.
    pub fn zeros(kind: CellKind, batch: usize, hidden: usize, device: &Device) -> Self {
        let h = Tensor::zeros([batch, hidden], device);
        let c = match kind {
            CellKind::Lstm => Some(Tensor::zeros([batch, hidden], device)),
            CellKind::Gru => None,
        };
        Self { h, c }
    }
}

/// A stack of `layers` recurrent layers of one [`CellKind`], each optionally bidirectional.
///
/// Layer `l > 0` reads the outputs of layer `l - 1` (`[B, T, H * dirs]`, forward and backward halves
/// concatenated). Cells are stored like PyTorch's: index `l * dirs + d` for layer `l`, direction `d`
/// (0 forward, 1 backward); only the `Vec` of the stack's kind is non-empty.
#[derive(Module, Debug)]
pub struct Rnn {
    pub lstm: Vec<FusedLstm>,
    pub gru: Vec<FusedGru>,
    #[module(skip)]
    kind: CellKind,
    layers: usize,
    hidden: usize,
    bidirectional: bool,
    /// The LSTM recurrence as one host operation, where the edge gave one (see [`crate::lstm_kernel`]).
    #[module(skip)]
    lstm_kernel: Option<LstmSequenceFn>,
}

impl Rnn {
    /// Cells initialised as in [`FusedLstm::new`] / [`FusedGru::new`], drawn in PyTorch's cell order.
    pub fn new(
        kind: CellKind,
        d_in: usize,
        hidden: usize,
        layers: usize,
        bidirectional: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let dirs = if bidirectional { 2 } else { 1 };
        let mut lstm = Vec::new();
        let mut gru = Vec::new();
        for l in 0..layers {
            let input = if l == 0 { d_in } else { hidden * dirs };
            for _ in 0..dirs {
                match kind {
                    CellKind::Lstm => lstm.push(FusedLstm::new(input, hidden, rng, device)),
                    CellKind::Gru => gru.push(FusedGru::new(input, hidden, rng, device)),
                }
            }
        }
        Self {
            lstm,
            gru,
            kind,
            layers,
            hidden,
            bidirectional,
            lstm_kernel: None,
        }
    }

    /// The stack running its LSTM recurrences with the edge's host kernels (where given).
    pub fn with_kernels(mut self, kernels: Option<HostKernels>) -> Self {
        self.lstm_kernel = kernels.map(|k| k.lstm);
        self
    }

    pub fn kind(&self) -> CellKind {
        self.kind
    }

    pub fn layers(&self) -> usize {
        self.layers
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    pub fn bidirectional(&self) -> bool {
        self.bidirectional
    }

    fn dirs(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Width of the outputs: `hidden * directions`.
    pub fn output_size(&self) -> usize {
        self.hidden * self.dirs()
    }

    fn cell_forward(
        &self,
        index: usize,
        x: Tensor<3>,
        state: Option<RnnState>,
        (mask, lengths): (Option<Tensor<2>>, Option<&[usize]>),
    ) -> (Tensor<3>, RnnState) {
        match self.kind {
            CellKind::Lstm => match self.lstm_kernel {
                Some(kernel) => self.lstm[index].forward_kernel(x, state, mask, lengths, kernel),
                None => self.lstm[index].forward(x, state, mask),
            },
            CellKind::Gru => self.gru[index].forward(x, state, mask),
        }
    }

    fn cell_step(&self, index: usize, x: Tensor<2>, state: Option<RnnState>) -> RnnState {
        match self.kind {
            CellKind::Lstm => self.lstm[index].step(x, state),
            CellKind::Gru => self.gru[index].step(x, state),
        }
    }

    /// Outputs of the top layer `[B, T, H * dirs]` and the final states ordered like PyTorch's
    /// `h_n`/`c_n` (layer 0 forward, layer 0 backward, layer 1 forward, ...).
    ///
    /// `lengths`: per-row valid steps. Where given and some row is shorter than `T`, the state is frozen
    /// past each row's end (`h ← m h' + (1 - m) h`), so the final states are those at each row's last
    /// real token, outputs at padded positions are zero, and the backward direction reads each row
    /// reversed within its own length: position `t < len` of the reversed row is `len - 1 - t`
    /// (a gather over `[B*T]`), padding stays at the end. `init`: initial states in the same order
    /// (zeros when `None`).
    ///
    /// # Panics
    /// If `lengths` does not have `B` entries or one exceeds `T`, or `init` does not have
    /// `layers * dirs` states. Callers build these from their own batches; they are not user input.
    pub fn forward(
        &self,
        x: Tensor<3>,
        lengths: Option<&[usize]>,
        init: Option<Vec<RnnState>>,
    ) -> (Tensor<3>, Vec<RnnState>) {
        let [b, t, _] = x.dims();
        let device = x.device();
        let dirs = self.dirs();
        if let Some(lengths) = lengths {
            assert_eq!(
                lengths.len(),
                b,
                "Rnn: {} lengths for a batch of {b}",
                lengths.len()
            );
            assert!(
                lengths.iter().all(|&n| n <= t),
                "Rnn: a length exceeds the sequence length {t}"
            );
        }
        let ragged = lengths.filter(|ls| ls.iter().any(|&n| n < t));
        let mask = ragged.map(|ls| {
            let m: Vec<f32> = ls
                .iter()
                .flat_map(|&n| (0..t).map(move |k| if k < n { 1.0 } else { 0.0 }))
                .collect();
            Tensor::<2>::from_data(TensorData::new(m, [b, t]), &device)
        });
        let reverse = self.bidirectional.then(|| {
            let idx: Vec<i64> = (0..b)
                .flat_map(|r| {
                    let n = ragged.map_or(t, |ls| ls[r]);
                    (0..t).map(move |k| (r * t + if k < n { n - 1 - k } else { k }) as i64)
                })
                .collect();
            Tensor::<1, Int>::from_data(TensorData::new(idx, [b * t]), &device)
        });
        let mut init: Vec<Option<RnnState>> = match init {
            Some(states) => {
                assert_eq!(
                    states.len(),
                    self.layers * dirs,
                    "Rnn: {} initial states, expected {}",
                    states.len(),
                    self.layers * dirs
                );
                states.into_iter().map(Some).collect()
            }
            None => (0..self.layers * dirs).map(|_| None).collect(),
        };
        if t == 0 {
            let states = init
                .into_iter()
                .enumerate()
                .map(|(k, s)| {
                    let input = if k < dirs {
                        x.dims()[2]
                    } else {
                        self.output_size()
                    };
                    let zeros = Tensor::zeros([b, 0, input], &device);
                    self.cell_forward(k, zeros, s, (None, None)).1
                })
                .collect();
            return (Tensor::zeros([b, 0, self.output_size()], &device), states);
        }
        let mut finals = Vec::with_capacity(self.layers * dirs);
        let mut input = x;
        for l in 0..self.layers {
            let (out_f, st_f) = self.cell_forward(
                l * dirs,
                input.clone(),
                init[l * dirs].take(),
                (mask.clone(), ragged),
            );
            finals.push(st_f);
            input = match &reverse {
                Some(idx) => {
                    let x_rev = gather_rows(input, idx);
                    let (out_b, st_b) = self.cell_forward(
                        l * dirs + 1,
                        x_rev,
                        init[l * dirs + 1].take(),
                        (mask.clone(), ragged),
                    );
                    finals.push(st_b);
                    Tensor::cat(vec![out_f, gather_rows(out_b, idx)], 2)
                }
                None => out_f,
            };
        }
        (input, finals)
    }

    /// One step of a unidirectional stack (autoregressive generation) on `x_t: [B, F]`: the top layer's
    /// `h: [B, H]` and the new states, one per layer. An empty `states` means zeros.
    ///
    /// # Panics
    /// If the stack is bidirectional, or `states` is neither empty nor one per layer.
    pub fn step(&self, x_t: Tensor<2>, states: Vec<RnnState>) -> (Tensor<2>, Vec<RnnState>) {
        assert!(
            !self.bidirectional,
            "Rnn::step needs a unidirectional stack"
        );
        let mut states: Vec<Option<RnnState>> = if states.is_empty() {
            (0..self.layers).map(|_| None).collect()
        } else {
            assert_eq!(
                states.len(),
                self.layers,
                "Rnn::step: {} states, expected {}",
                states.len(),
                self.layers
            );
            states.into_iter().map(Some).collect()
        };
        let mut input = x_t;
        let mut out = Vec::with_capacity(self.layers);
        for (l, state) in states.iter_mut().enumerate() {
            let s = self.cell_step(l, input, state.take());
            input = s.h.clone();
            out.push(s);
        }
        (input, out)
    }
}

/// `x: [B, T, D]` with its `B*T` rows reordered by `idx` (a permutation of `0..B*T`).
fn gather_rows(x: Tensor<3>, idx: &Tensor<1, Int>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    x.reshape([b * t, d])
        .select(0, idx.clone())
        .reshape([b, t, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use test_util::*;

    /// Random initial states for `rnn` with `batch` rows, ordered like its final states.
    fn rand_states(rnn: &Rnn, batch: usize, rng: &mut Rng) -> Vec<RnnState> {
        let dirs = if rnn.bidirectional() { 2 } else { 1 };
        (0..rnn.layers() * dirs)
            .map(|_| RnnState {
                h: rand_t([batch, rnn.hidden()], rng),
                c: (rnn.kind() == CellKind::Lstm).then(|| rand_t([batch, rnn.hidden()], rng)),
            })
            .collect()
    }

    fn row_states(states: &[RnnState], r: usize) -> Vec<RnnState> {
        states
            .iter()
            .map(|s| RnnState {
                h: s.h.clone().narrow(0, r, 1),
                c: s.c.clone().map(|c| c.narrow(0, r, 1)),
            })
            .collect()
    }

    fn assert_states_close(what: &str, a: &[RnnState], b: &[RnnState]) {
        assert_eq!(a.len(), b.len(), "{what}: number of states");
        for (k, (sa, sb)) in a.iter().zip(b).enumerate() {
            assert_close(&format!("{what}: h[{k}]"), sa.h.clone(), sb.h.clone());
            match (&sa.c, &sb.c) {
                (Some(ca), Some(cb)) => {
                    assert_close(&format!("{what}: c[{k}]"), ca.clone(), cb.clone())
                }
                (None, None) => {}
                _ => panic!("{what}: c[{k}] present in one state only"),
            }
        }
    }

    fn masked_rows_match_rows_alone(kind: CellKind) {
        let mut rng = Rng::seed_from_u64(3);
        let lengths = [5, 2, 0, 4];
        let b = lengths.len();
        let rnn = Rnn::new(kind, F, H, 2, true, &mut rng, &dev());
        assert_eq!(rnn.output_size(), 2 * H);
        let x = rand_t([b, T, F], &mut rng);
        let init = rand_states(&rnn, b, &mut rng);
        let (out, finals) = rnn.forward(x.clone(), Some(&lengths), Some(init.clone()));
        assert_eq!(out.dims(), [b, T, 2 * H]);
        assert_eq!(finals.len(), 4);
        for (r, &n) in lengths.iter().enumerate() {
            let out_r = out.clone().narrow(0, r, 1);
            let init_r = row_states(&init, r);
            let finals_r = row_states(&finals, r);
            if n < T {
                let pad = host(out_r.clone().narrow(1, n, T - n));
                assert!(
                    pad.iter().all(|&v| v == 0.0),
                    "row {r}: outputs past its end are zero"
                );
            }
            if n == 0 {
                assert_states_close(&format!("row {r} (empty)"), &finals_r, &init_r);
                continue;
            }
            let (alone, alone_finals) = rnn.forward(
                x.clone().narrow(0, r, 1).narrow(1, 0, n),
                None,
                Some(init_r),
            );
            assert_close(&format!("row {r}: outputs"), out_r.narrow(1, 0, n), alone);
            assert_states_close(&format!("row {r}"), &finals_r, &alone_finals);
        }
    }

    #[test]
    fn masked_lstm_rows_match_rows_alone() {
        masked_rows_match_rows_alone(CellKind::Lstm);
    }

    #[test]
    fn masked_gru_rows_match_rows_alone() {
        masked_rows_match_rows_alone(CellKind::Gru);
    }

    fn backward_direction_reads_rows_reversed(kind: CellKind) {
        let mut rng = Rng::seed_from_u64(4);
        let lengths = [3, 5, 1];
        let b = lengths.len();
        let rnn = Rnn::new(kind, F, H, 1, true, &mut rng, &dev());
        let x = rand_t([b, T, F], &mut rng);
        let init = rand_states(&rnn, b, &mut rng);
        let (out, finals) = rnn.forward(x.clone(), Some(&lengths), Some(init.clone()));
        for (r, &n) in lengths.iter().enumerate() {
            let steps: Vec<Tensor<3>> = (0..n)
                .rev()
                .map(|k| x.clone().narrow(0, r, 1).narrow(1, k, 1))
                .collect();
            let x_rev = Tensor::cat(steps, 1);
            let init_r = row_states(&init, r).swap_remove(1);
            let (alone, state) = rnn.cell_forward(1, x_rev, Some(init_r), (None, None));
            let bwd = out.clone().narrow(0, r, 1).narrow(2, H, H);
            for k in 0..n {
                assert_close(
                    &format!("row {r}, step {k}"),
                    bwd.clone().narrow(1, n - 1 - k, 1),
                    alone.clone().narrow(1, k, 1),
                );
            }
            assert_states_close(&format!("row {r}"), &row_states(&finals, r)[1..], &[state]);
        }
    }

    #[test]
    fn lstm_backward_direction_reads_rows_reversed() {
        backward_direction_reads_rows_reversed(CellKind::Lstm);
    }

    #[test]
    fn gru_backward_direction_reads_rows_reversed() {
        backward_direction_reads_rows_reversed(CellKind::Gru);
    }

    fn steps_match_forward(kind: CellKind) {
        let mut rng = Rng::seed_from_u64(5);
        let rnn = Rnn::new(kind, F, H, 2, false, &mut rng, &dev());
        let x = rand_t([B, T, F], &mut rng);
        let init = rand_states(&rnn, B, &mut rng);
        let (out, finals) = rnn.forward(x.clone(), None, Some(init.clone()));
        let mut states = init;
        for k in 0..T {
            let x_t = x.clone().narrow(1, k, 1).reshape([B, F]);
            let (h, next) = rnn.step(x_t, states);
            assert_close(
                &format!("step {k}"),
                h,
                out.clone().narrow(1, k, 1).reshape([B, H]),
            );
            states = next;
        }
        assert_states_close("final", &states, &finals);
        // From zeros: an empty state list.
        let (h0, s0) = rnn.step(x.clone().narrow(1, 0, 1).reshape([B, F]), Vec::new());
        let (out0, _) = rnn.forward(x.narrow(1, 0, 1), None, None);
        assert_close("first step from zeros", h0, out0.reshape([B, H]));
        assert_eq!(s0.len(), 2);
    }

    #[test]
    fn lstm_steps_match_forward() {
        steps_match_forward(CellKind::Lstm);
    }

    #[test]
    fn gru_steps_match_forward() {
        steps_match_forward(CellKind::Gru);
    }

    #[test]
    fn full_lengths_equal_no_lengths() {
        let mut rng = Rng::seed_from_u64(6);
        let rnn = Rnn::new(CellKind::Lstm, F, H, 1, true, &mut rng, &dev());
        let x = rand_t([B, T, F], &mut rng);
        let (a, sa) = rnn.forward(x.clone(), Some(&[T; B]), None);
        let (b, sb) = rnn.forward(x, None, None);
        assert_close("outputs", a, b);
        assert_states_close("finals", &sa, &sb);
    }

    #[test]
    fn empty_sequences_keep_the_initial_state() {
        let mut rng = Rng::seed_from_u64(7);
        for kind in [CellKind::Lstm, CellKind::Gru] {
            let rnn = Rnn::new(kind, F, H, 2, true, &mut rng, &dev());
            let init = rand_states(&rnn, B, &mut rng);
            let (out, finals) =
                rnn.forward(Tensor::zeros([B, 0, F], &dev()), None, Some(init.clone()));
            assert_eq!(out.dims(), [B, 0, 2 * H]);
            assert_states_close("empty", &finals, &init);
            let (_, zeros) = rnn.forward(Tensor::zeros([B, 0, F], &dev()), None, None);
            assert_eq!(zeros.len(), 4);
            assert!(host(zeros[3].h.clone()).iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn cell_kind_serde_is_snake_case() {
        let json = serde_json::to_string(&[CellKind::Lstm, CellKind::Gru]).expect("serialize");
        assert_eq!(json, r#"["lstm","gru"]"#);
        let back: Vec<CellKind> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, [CellKind::Lstm, CellKind::Gru]);
    }
}

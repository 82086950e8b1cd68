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

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use emvae_core::rng::Rng;
use emvae_vae::nn::param;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::lstm_kernel::{HostKernels, LstmSequenceFn};

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

/// `n` draws from `U(-bound, bound)`.
fn uniform(n: usize, bound: f64, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect()
}

/// Splits `xp: [B, T, G]` into `T` tensors `[B, G]`, one per step.
///
/// Under autodiff the gradient of a slice is a zero tensor of the sliced tensor's full size with the
/// slice's gradient written in, and the `T` gradients are then summed: slicing `T` steps straight out of
/// `[B, T, G]` moves `O(T^2 B G)` memory in the backward pass. Halving recursively keeps it at
/// `O(T log T B G)`.
fn split_steps(xp: Tensor<3>) -> Vec<Tensor<2>> {
    fn go(xp: Tensor<3>, out: &mut Vec<Tensor<2>>) {
        let [b, t, g] = xp.dims();
        if t == 1 {
            out.push(xp.reshape([b, g]));
        } else if t > 1 {
            let half = t / 2;
            go(xp.clone().narrow(1, 0, half), out);
            go(xp.narrow(1, half, t - half), out);
        }
    }
    let mut out = Vec::with_capacity(xp.dims()[1]);
    go(xp, &mut out);
    out
}

/// Whether a cell should multiply each step's input inside the step (`[x_t, h, 1] [W_ih; W_hh; b]`, one
/// matmul per step) rather than project the whole sequence at once (`X W_ih + b`, then `h W_hh` per step).
///
/// Both give the same values; they differ in cost under autodiff. Projecting first splits `[B, T, G]`
/// (`G = 4H` or `3H`) into steps, which costs about `2 log2(T) B T G` floats of zero-filled gradient
/// buffers (see [`split_steps`]); multiplying per step splits `x: [B, T, F]` instead (`2 log2(T) B T F`)
/// but adds an `[F, G]` weight gradient at every step (about `3 T F G` floats moved). Per step wins when
/// `3 F < 2 B log2(T)`: measured on flex, it was faster for (B, T, F) = (32, 50, 32), (32, 22, 64),
/// (64, 22, 128) and (128, 22, 288), slower for (32, 22, 128) and (32, 22, 288).
fn project_per_step(batch: usize, len: usize, d_in: usize) -> bool {
    3.0 * (d_in as f64) < 2.0 * (batch as f64) * (len as f64).log2()
}

/// The per-step columns `[B, 1]` of a float 0/1 mask `[B, T]`.
fn mask_steps(mask: &Tensor<2>) -> Vec<Tensor<2>> {
    let [b, t] = mask.dims();
    (0..t)
        .map(|k| mask.clone().slice([0..b, k..k + 1]))
        .collect()
}

/// `old + m (new - old)`: `new` where `m = 1`, `old` where `m = 0` (`m: [B, 1]`).
fn blend(m: &Tensor<2>, new: Tensor<2>, old: Tensor<2>) -> Tensor<2> {
    old.clone() + m.clone() * (new - old)
}

/// Stacks per-step outputs `[B, H]` into `[B, T, H]` and zeroes masked positions.
fn collect_outputs(
    outs: Vec<Tensor<2>>,
    batch: usize,
    hidden: usize,
    mask: Option<Tensor<2>>,
    device: &Device,
) -> Tensor<3> {
    if outs.is_empty() {
        return Tensor::zeros([batch, 0, hidden], device);
    }
    let out: Tensor<3> = Tensor::stack(outs, 1);
    match mask {
        Some(m) => out * m.unsqueeze_dim::<3>(2),
        None => out,
    }
}

/// `[1, G]`: 1 in every column except 2 in block `block` (of width `hidden`).
///
/// Multiplying a gate's pre-activation by 2 lets one sigmoid serve for `tanh`, through
/// `tanh(a) = 2 σ(2a) - 1`: flex evaluates `tanh` about 3 times slower than `σ`, and under autodiff
/// both are evaluated again in the backward pass (whose `tanh` rule also takes 4 more passes).
fn doubled_block(gates: usize, hidden: usize, block: usize, device: &Device) -> Tensor<2> {
    let scale: Vec<f32> = (0..gates * hidden)
        .map(|j| if j / hidden == block { 2.0 } else { 1.0 })
        .collect();
    Tensor::from_data(TensorData::new(scale, [1, gates * hidden]), device)
}

/// `tanh(a) = 2 σ(2a) - 1`, given `s = σ(2a)`.
fn tanh_from_sigmoid(s: Tensor<2>) -> Tensor<2> {
    s.mul_scalar(2.0).sub_scalar(1.0)
}

/// `tanh(x) = 2 σ(2x) - 1` (see [`doubled_block`] for why not `x.tanh()`).
fn tanh_via_sigmoid(x: Tensor<2>) -> Tensor<2> {
    tanh_from_sigmoid(activation::sigmoid(x.mul_scalar(2.0)))
}

/// An LSTM cell with fused gate weights, PyTorch's gate order `i, f, g, o`:
///
/// ```text
/// [a_i a_f a_g a_o] = x W_ih + h W_hh + b          (each block [B, H])
/// i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
/// c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
/// ```
///
/// `w_ih: [F, 4H]`, `w_hh: [H, 4H]`, `bias: [4H]` (PyTorch's `b_ih + b_hh`).
///
/// Computed as: the `g` columns of the weights and bias are doubled once per sequence, so one sigmoid
/// over all `4H` columns gives `i, f, o` and `σ(2 a_g)`, and `g = 2 σ(2 a_g) - 1`; likewise
/// `tanh(c') = 2 σ(2 c') - 1`.
#[derive(Module, Debug)]
pub struct FusedLstm {
    pub w_ih: Param<Tensor<2>>,
    pub w_hh: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    pub d_in: usize,
    pub hidden: usize,
}

impl FusedLstm {
    /// PyTorch's initialisation: every weight `~ U(-1/√H, 1/√H)`; the bias is the sum of two such
    /// draws (PyTorch's `b_ih + b_hh`), so its distribution is PyTorch's effective bias. The forget-gate
    /// bias is not raised.
    pub fn new(d_in: usize, hidden: usize, rng: &mut Rng, device: &Device) -> Self {
        let g = 4 * hidden;
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let w_ih = uniform(d_in * g, bound, rng);
        let w_hh = uniform(hidden * g, bound, rng);
        let b_ih = uniform(g, bound, rng);
        let b_hh = uniform(g, bound, rng);
        let bias = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        Self {
            w_ih: param(w_ih, [d_in, g], device),
            w_hh: param(w_hh, [hidden, g], device),
            bias: param(bias, [g], device),
            d_in,
            hidden,
        }
    }

    /// `(w_ih, w_hh, bias [1, 4H])` with the `g` columns doubled.
    fn scaled_params(&self, device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let scale = doubled_block(4, self.hidden, 2, device);
        (
            self.w_ih.val() * scale.clone(),
            self.w_hh.val() * scale.clone(),
            self.bias.val().unsqueeze::<2>() * scale,
        )
    }

    /// One step from the pre-activations `a: [B, 4H]` with the `g` block doubled.
    fn cell(&self, a: Tensor<2>, c: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let n = self.hidden;
        let s = activation::sigmoid(a);
        let i = s.clone().narrow(1, 0, n);
        let f = s.clone().narrow(1, n, n);
        let g = tanh_from_sigmoid(s.clone().narrow(1, 2 * n, n));
        let o = s.narrow(1, 3 * n, n);
        let c = f * c + i * g;
        let h = o * tanh_via_sigmoid(c.clone());
        (h, c)
    }

    fn initial(
        &self,
        state: Option<RnnState>,
        batch: usize,
        device: &Device,
    ) -> (Tensor<2>, Tensor<2>) {
        match state {
            Some(RnnState { h, c: Some(c) }) => (h, c),
            Some(RnnState { h, c: None }) => {
                let c = Tensor::zeros([batch, self.hidden], device);
                (h, c)
            }
            None => (
                Tensor::zeros([batch, self.hidden], device),
                Tensor::zeros([batch, self.hidden], device),
            ),
        }
    }

    /// Runs the sequence `x: [B, T, F]` from `state` (zeros when `None`). With `mask: [B, T]` (float
    /// 0/1), steps where the mask is 0 leave the state unchanged (`h ← m h' + (1 - m) h`, likewise `c`)
    /// and their outputs are zero. Returns all hidden states `[B, T, H]` and the final state.
    ///
    /// # Panics
    /// If `F` differs from the cell's input size.
    pub fn forward(
        &self,
        x: Tensor<3>,
        state: Option<RnnState>,
        mask: Option<Tensor<2>>,
    ) -> (Tensor<3>, RnnState) {
        let [b, t, f] = x.dims();
        self.forward_with(x, state, mask, project_per_step(b, t, f))
    }

    /// [`forward`](Self::forward) with the recurrence as one host operation (`kernel`, see
    /// [`crate::lstm_kernel`]); `lengths` are the rows' valid steps where some row is shorter than `T`
    /// (`mask` the same as a float mask, for the fallback). Falls back to [`forward`](Self::forward)
    /// where the kernel does not take these tensors.
    pub fn forward_kernel(
        &self,
        x: Tensor<3>,
        state: Option<RnnState>,
        mask: Option<Tensor<2>>,
        lengths: Option<&[usize]>,
        kernel: LstmSequenceFn,
    ) -> (Tensor<3>, RnnState) {
        let [b, t, f] = x.dims();
        if t == 0 || f != self.d_in {
            return self.forward(x, state, mask);
        }
        let device = x.device();
        let (h0, c0) = self.initial(state, b, &device);
        let g = 4 * self.hidden;
        let xp = (x.clone().reshape([b * t, f]).matmul(self.w_ih.val())
            + self.bias.val().unsqueeze::<2>())
        .reshape([b, t, g]);
        match kernel(xp, self.w_hh.val(), h0.clone(), c0.clone(), lengths) {
            Some(y) => {
                let h = self.hidden;
                let out = y.clone().narrow(1, 0, t);
                let h_n = y.clone().narrow(1, t, 1).reshape([b, h]);
                let c_n = y.narrow(1, t + 1, 1).reshape([b, h]);
                (
                    out,
                    RnnState {
                        h: h_n,
                        c: Some(c_n),
                    },
                )
            }
            None => self.forward(x, Some(RnnState { h: h0, c: Some(c0) }), mask),
        }
    }

    /// [`forward`](Self::forward) with the input multiplied per step or projected first
    /// (see [`project_per_step`]).
    fn forward_with(
        &self,
        x: Tensor<3>,
        state: Option<RnnState>,
        mask: Option<Tensor<2>>,
        per_step: bool,
    ) -> (Tensor<3>, RnnState) {
        let [b, t, f] = x.dims();
        assert_eq!(
            f, self.d_in,
            "FusedLstm: input has {f} features, expected {}",
            self.d_in
        );
        let device = x.device();
        let (h0, c0) = self.initial(state, b, &device);
        if t == 0 {
            let out = Tensor::zeros([b, 0, self.hidden], &device);
            return (out, RnnState { h: h0, c: Some(c0) });
        }
        let (w_ih, w_hh, bias) = self.scaled_params(&device);
        // Pre-activations of step k from its input part and h.
        let (steps, pre): (_, Box<dyn Fn(Tensor<2>, Tensor<2>) -> Tensor<2>>) = if per_step {
            let w = Tensor::cat(vec![w_ih, w_hh, bias], 0);
            let ones = Tensor::ones([b, 1], &device);
            let pre = move |x_t, h| Tensor::cat(vec![x_t, h, ones.clone()], 1).matmul(w.clone());
            (split_steps(x), Box::new(pre))
        } else {
            let xp = x.reshape([b * t, f]).matmul(w_ih) + bias;
            let pre = move |xp_t: Tensor<2>, h: Tensor<2>| xp_t + h.matmul(w_hh.clone());
            (
                split_steps(xp.reshape([b, t, 4 * self.hidden])),
                Box::new(pre),
            )
        };
        let masks = mask.as_ref().map(mask_steps);
        let (mut h, mut c) = (h0, c0);
        let mut outs = Vec::with_capacity(t);
        for (k, input) in steps.into_iter().enumerate() {
            let (h2, c2) = self.cell(pre(input, h.clone()), c.clone());
            match &masks {
                Some(ms) => {
                    h = blend(&ms[k], h2, h);
                    c = blend(&ms[k], c2, c);
                }
                None => {
                    h = h2;
                    c = c2;
                }
            }
            outs.push(h.clone());
        }
        let out = collect_outputs(outs, b, self.hidden, mask, &device);
        (out, RnnState { h, c: Some(c) })
    }

    /// One step on `x_t: [B, F]` from `state` (zeros when `None`).
    ///
    /// # Panics
    /// If `F` differs from the cell's input size.
    pub fn step(&self, x_t: Tensor<2>, state: Option<RnnState>) -> RnnState {
        let [b, f] = x_t.dims();
        assert_eq!(
            f, self.d_in,
            "FusedLstm: input has {f} features, expected {}",
            self.d_in
        );
        let device = x_t.device();
        let (h, c) = self.initial(state, b, &device);
        let a = x_t.matmul(self.w_ih.val())
            + h.matmul(self.w_hh.val())
            + self.bias.val().unsqueeze::<2>();
        // Double the g block here (a [B, 4H] op) rather than the weights.
        let (h, c) = self.cell(a * doubled_block(4, self.hidden, 2, &device), c);
        RnnState { h, c: Some(c) }
    }
}

/// A GRU cell with fused gate weights, PyTorch's formulas and gate order `r, z, n`:
///
/// ```text
/// [p_r p_z p_n] = x W_ih + b_ih,   [q_r q_z q_n] = h W_hh + b_hh    (each block [B, H])
/// r = σ(p_r + q_r),   z = σ(p_z + q_z),   n = tanh(p_n + r ⊙ q_n)
/// h' = (1 - z) ⊙ n + z ⊙ h
/// ```
///
/// `w_ih: [F, 3H]`, `w_hh: [H, 3H]`, `b_ih, b_hh: [3H]`.
///
/// Computed as: the `n` columns of the weights and biases are doubled once per sequence, so that
/// `n = 2 σ(2 p_n + r ⊙ 2 q_n) - 1` needs a sigmoid only.
#[derive(Module, Debug)]
pub struct FusedGru {
    pub w_ih: Param<Tensor<2>>,
    pub w_hh: Param<Tensor<2>>,
    pub b_ih: Param<Tensor<1>>,
    pub b_hh: Param<Tensor<1>>,
    pub d_in: usize,
    pub hidden: usize,
}

impl FusedGru {
    /// PyTorch's initialisation: every weight and bias `~ U(-1/√H, 1/√H)`.
    pub fn new(d_in: usize, hidden: usize, rng: &mut Rng, device: &Device) -> Self {
        let g = 3 * hidden;
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let w_ih = uniform(d_in * g, bound, rng);
        let w_hh = uniform(hidden * g, bound, rng);
        let b_ih = uniform(g, bound, rng);
        let b_hh = uniform(g, bound, rng);
        Self {
            w_ih: param(w_ih, [d_in, g], device),
            w_hh: param(w_hh, [hidden, g], device),
            b_ih: param(b_ih, [g], device),
            b_hh: param(b_hh, [g], device),
            d_in,
            hidden,
        }
    }

    /// `(w_ih, w_hh, b_ih [1, 3H], b_hh [1, 3H])` with the `n` columns doubled.
    fn scaled_params(&self, device: &Device) -> [Tensor<2>; 4] {
        let scale = doubled_block(3, self.hidden, 2, device);
        [
            self.w_ih.val() * scale.clone(),
            self.w_hh.val() * scale.clone(),
            self.b_ih.val().unsqueeze::<2>() * scale.clone(),
            self.b_hh.val().unsqueeze::<2>() * scale,
        ]
    }

    /// One step from `rz = p_rz + q_rz: [B, 2H]`, `p_n`, `q_n: [B, H]` (`p = x W_ih + b_ih`,
    /// `q = h W_hh + b_hh`, `n` blocks doubled).
    fn cell(&self, rz: Tensor<2>, p_n: Tensor<2>, q_n: Tensor<2>, h: Tensor<2>) -> Tensor<2> {
        let n = self.hidden;
        let rz = activation::sigmoid(rz);
        let r = rz.clone().narrow(1, 0, n);
        let z = rz.narrow(1, n, n);
        let cand = tanh_from_sigmoid(activation::sigmoid(p_n + r * q_n));
        // (1 - z) n + z h = n + z (h - n)
        cand.clone() + z * (h - cand)
    }

    /// The cell on `p, q: [B, 3H]`.
    fn cell_pq(&self, p: Tensor<2>, q: Tensor<2>, h: Tensor<2>) -> Tensor<2> {
        let n = self.hidden;
        let rz = (p.clone() + q.clone()).narrow(1, 0, 2 * n);
        self.cell(rz, p.narrow(1, 2 * n, n), q.narrow(1, 2 * n, n), h)
    }

    fn initial(&self, state: Option<RnnState>, batch: usize, device: &Device) -> Tensor<2> {
        match state {
            Some(s) => s.h,
            None => Tensor::zeros([batch, self.hidden], device),
        }
    }

    /// Runs the sequence `x: [B, T, F]` from `state` (zeros when `None`; `c` is ignored). With
    /// `mask: [B, T]` (float 0/1), steps where the mask is 0 leave the state unchanged
    /// (`h ← m h' + (1 - m) h`) and their outputs are zero. Returns all hidden states `[B, T, H]` and the
    /// final state (`c = None`).
    ///
    /// # Panics
    /// If `F` differs from the cell's input size.
    pub fn forward(
        &self,
        x: Tensor<3>,
        state: Option<RnnState>,
        mask: Option<Tensor<2>>,
    ) -> (Tensor<3>, RnnState) {
        let [b, t, f] = x.dims();
        self.forward_with(x, state, mask, project_per_step(b, t, f))
    }

    /// [`forward`](Self::forward) with the input multiplied per step or projected first
    /// (see [`project_per_step`]).
    fn forward_with(
        &self,
        x: Tensor<3>,
        state: Option<RnnState>,
        mask: Option<Tensor<2>>,
        per_step: bool,
    ) -> (Tensor<3>, RnnState) {
        let [b, t, f] = x.dims();
        assert_eq!(
            f, self.d_in,
            "FusedGru: input has {f} features, expected {}",
            self.d_in
        );
        let device = x.device();
        let n = self.hidden;
        let h0 = self.initial(state, b, &device);
        if t == 0 {
            return (
                Tensor::zeros([b, 0, n], &device),
                RnnState { h: h0, c: None },
            );
        }
        let [w_ih, w_hh, b_ih, b_hh] = self.scaled_params(&device);
        // The new hidden state of step k from its input part and h.
        let (steps, next): (_, Box<dyn Fn(Tensor<2>, Tensor<2>) -> Tensor<2>>) = if per_step {
            // One matmul [x_t, h, 1] W gives [p_rz + q_rz, p_n, q_n] with
            //     W = [[W_ih_rz, W_ih_n, 0], [W_hh_rz, 0, W_hh_n], [b_ih_rz + b_hh_rz, b_ih_n, b_hh_n]].
            let cols = |w: &Tensor<2>, from: usize, len: usize| w.clone().narrow(1, from, len);
            let rows = Tensor::cat(
                vec![
                    Tensor::cat(vec![w_ih, Tensor::zeros([f, n], &device)], 1),
                    Tensor::cat(
                        vec![
                            cols(&w_hh, 0, 2 * n),
                            Tensor::zeros([n, n], &device),
                            cols(&w_hh, 2 * n, n),
                        ],
                        1,
                    ),
                    Tensor::cat(
                        vec![
                            cols(&b_ih, 0, 2 * n) + cols(&b_hh, 0, 2 * n),
                            cols(&b_ih, 2 * n, n),
                            cols(&b_hh, 2 * n, n),
                        ],
                        1,
                    ),
                ],
                0,
            );
            let ones = Tensor::ones([b, 1], &device);
            let next = move |x_t, h: Tensor<2>| {
                let a = Tensor::cat(vec![x_t, h.clone(), ones.clone()], 1).matmul(rows.clone());
                let rz = a.clone().narrow(1, 0, 2 * n);
                self.cell(rz, a.clone().narrow(1, 2 * n, n), a.narrow(1, 3 * n, n), h)
            };
            (split_steps(x), Box::new(next))
        } else {
            let xp = x.reshape([b * t, f]).matmul(w_ih) + b_ih;
            let next = move |p, h: Tensor<2>| {
                let q = h.clone().matmul(w_hh.clone()) + b_hh.clone();
                self.cell_pq(p, q, h)
            };
            (split_steps(xp.reshape([b, t, 3 * n])), Box::new(next))
        };
        let masks = mask.as_ref().map(mask_steps);
        let mut h = h0;
        let mut outs = Vec::with_capacity(t);
        for (k, input) in steps.into_iter().enumerate() {
            let h2 = next(input, h.clone());
            h = match &masks {
                Some(ms) => blend(&ms[k], h2, h),
                None => h2,
            };
            outs.push(h.clone());
        }
        let out = collect_outputs(outs, b, n, mask, &device);
        (out, RnnState { h, c: None })
    }

    /// One step on `x_t: [B, F]` from `state` (zeros when `None`).
    ///
    /// # Panics
    /// If `F` differs from the cell's input size.
    pub fn step(&self, x_t: Tensor<2>, state: Option<RnnState>) -> RnnState {
        let [b, f] = x_t.dims();
        assert_eq!(
            f, self.d_in,
            "FusedGru: input has {f} features, expected {}",
            self.d_in
        );
        let device = x_t.device();
        let h = self.initial(state, b, &device);
        // Double the n block of the [B, 3H] pre-activations rather than the weights.
        let scale = doubled_block(3, self.hidden, 2, &device);
        let p = (x_t.matmul(self.w_ih.val()) + self.b_ih.val().unsqueeze::<2>()) * scale.clone();
        let q = (h.clone().matmul(self.w_hh.val()) + self.b_hh.val().unsqueeze::<2>()) * scale;
        RnnState {
            h: self.cell_pq(p, q, h),
            c: None,
        }
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
    use burn::nn::{GateController, GruConfig, Linear, LstmConfig, LstmState};
    use rand::SeedableRng;

    const B: usize = 3;
    const T: usize = 5;
    const F: usize = 4;
    const H: usize = 6;
    const TOL: f32 = 1e-4;

    fn dev() -> Device {
        Device::flex().autodiff()
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().expect("f32 tensor")
    }

    /// A tensor of `U(-1, 1)` draws.
    fn rand_t<const D: usize>(shape: [usize; D], rng: &mut Rng) -> Tensor<D> {
        let n = shape.iter().product();
        Tensor::from_data(TensorData::new(uniform(n, 1.0, rng), shape), &dev())
    }

    /// A fresh leaf with `t`'s values that requires a gradient.
    fn leaf<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
        Tensor::from_data(t.to_data(), &dev()).require_grad()
    }

    /// `max |a - b| / max |b|`.
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        let scale = b.iter().map(|y| y.abs()).fold(0.0, f32::max).max(1e-12);
        diff / scale
    }

    fn assert_close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let e = rel_err(&host(a), &host(b));
        assert!(e < TOL, "{what}: relative error {e}");
    }

    fn grad<const D: usize>(t: &Tensor<D>, grads: &burn::tensor::Gradients) -> Tensor<D> {
        t.grad(grads).expect("a gradient")
    }

    /// A burn `Linear` holding a copy of `w` (and `b`), a new leaf.
    fn linear_of(w: Tensor<2>, b: Tensor<1>) -> Linear {
        Linear {
            weight: Param::from_data(w.to_data(), &dev()),
            bias: Some(Param::from_data(b.to_data(), &dev())),
        }
    }

    fn gate(
        w_ih: &Tensor<2>,
        w_hh: &Tensor<2>,
        b_ih: &Tensor<1>,
        b_hh: &Tensor<1>,
        k: usize,
    ) -> GateController {
        GateController {
            input_transform: linear_of(
                w_ih.clone().narrow(1, k * H, H),
                b_ih.clone().narrow(0, k * H, H),
            ),
            hidden_transform: linear_of(
                w_hh.clone().narrow(1, k * H, H),
                b_hh.clone().narrow(0, k * H, H),
            ),
        }
    }

    /// Gradients of a gate's four tensors: (w_ih cols, w_hh cols, b_ih part, b_hh part).
    fn gate_grads(
        g: &GateController,
        grads: &burn::tensor::Gradients,
    ) -> (Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>) {
        let bias = |l: &Linear| grad(&l.bias.as_ref().expect("bias").val(), grads);
        (
            grad(&g.input_transform.weight.val(), grads),
            grad(&g.hidden_transform.weight.val(), grads),
            bias(&g.input_transform),
            bias(&g.hidden_transform),
        )
    }

    #[test]
    fn fused_lstm_matches_burn_lstm_outputs_and_gradients() {
        fused_lstm_matches_burn_lstm(false);
    }

    #[test]
    fn fused_lstm_per_step_input_matches_burn_lstm() {
        fused_lstm_matches_burn_lstm(true);
    }

    fn fused_lstm_matches_burn_lstm(per_step: bool) {
        let mut rng = Rng::seed_from_u64(1);
        let cell = FusedLstm::new(F, H, &mut rng, &dev());
        let x = rand_t([B, T, F], &mut rng);
        let h0 = rand_t([B, H], &mut rng);
        let c0 = rand_t([B, H], &mut rng);
        let r_out = rand_t([B, T, H], &mut rng);
        let r_h = rand_t([B, H], &mut rng);
        let r_c = rand_t([B, H], &mut rng);
        let loss = |out: Tensor<3>, h: Tensor<2>, c: Tensor<2>| {
            (out * r_out.clone()).sum() + (h * r_h.clone()).sum() + (c * r_c.clone()).sum()
        };

        // Fused.
        let (x1, h1, c1) = (leaf(&x), leaf(&h0), leaf(&c0));
        let (out1, s1) = cell.forward_with(
            x1.clone(),
            Some(RnnState {
                h: h1.clone(),
                c: Some(c1.clone()),
            }),
            None,
            per_step,
        );
        let c_fin1 = s1.c.clone().expect("lstm cell state");
        let grads1 = loss(out1.clone(), s1.h.clone(), c_fin1.clone()).backward();

        // burn's Lstm with the same weights; gate order i, f, g, o.
        let w_ih = cell.w_ih.val();
        let w_hh = cell.w_hh.val();
        let bias = cell.bias.val();
        let zero = Tensor::<1>::zeros([4 * H], &dev());
        let mut lstm = LstmConfig::new(F, H, true).init(&dev());
        lstm.input_gate = gate(&w_ih, &w_hh, &bias, &zero, 0);
        lstm.forget_gate = Some(gate(&w_ih, &w_hh, &bias, &zero, 1));
        lstm.cell_gate = gate(&w_ih, &w_hh, &bias, &zero, 2);
        lstm.output_gate = gate(&w_ih, &w_hh, &bias, &zero, 3);
        let (x2, h2, c2) = (leaf(&x), leaf(&h0), leaf(&c0));
        let (out2, s2) = lstm.forward(x2.clone(), Some(LstmState::new(c2.clone(), h2.clone())));
        let grads2 = loss(out2.clone(), s2.hidden.clone(), s2.cell.clone()).backward();

        assert_close("output", out1, out2);
        assert_close("final h", s1.h, s2.hidden);
        assert_close("final c", c_fin1, s2.cell);
        assert_close("dL/dx", grad(&x1, &grads1), grad(&x2, &grads2));
        assert_close("dL/dh0", grad(&h1, &grads1), grad(&h2, &grads2));
        assert_close("dL/dc0", grad(&c1, &grads1), grad(&c2, &grads2));
        let forget = lstm.forget_gate.as_ref().expect("forget gate");
        let gates = [&lstm.input_gate, forget, &lstm.cell_gate, &lstm.output_gate]
            .map(|g| gate_grads(g, &grads2));
        let cat2 = |f: fn(&(Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>)) -> Tensor<2>| {
            Tensor::cat(gates.iter().map(f).collect(), 1)
        };
        assert_close("dL/dw_ih", grad(&w_ih, &grads1), cat2(|g| g.0.clone()));
        assert_close("dL/dw_hh", grad(&w_hh, &grads1), cat2(|g| g.1.clone()));
        let db: Tensor<1> = Tensor::cat(gates.iter().map(|g| g.2.clone()).collect(), 0);
        assert_close("dL/dbias", grad(&bias, &grads1), db);
    }

    #[test]
    fn fused_gru_matches_burn_gru_outputs_and_gradients() {
        fused_gru_matches_burn_gru(false);
    }

    #[test]
    fn fused_gru_per_step_input_matches_burn_gru() {
        fused_gru_matches_burn_gru(true);
    }

    fn fused_gru_matches_burn_gru(per_step: bool) {
        let mut rng = Rng::seed_from_u64(2);
        let cell = FusedGru::new(F, H, &mut rng, &dev());
        let x = rand_t([B, T, F], &mut rng);
        let h0 = rand_t([B, H], &mut rng);
        let r_out = rand_t([B, T, H], &mut rng);
        let r_h = rand_t([B, H], &mut rng);
        let loss =
            |out: Tensor<3>, h: Tensor<2>| (out * r_out.clone()).sum() + (h * r_h.clone()).sum();

        let (x1, h1) = (leaf(&x), leaf(&h0));
        let (out1, s1) = cell.forward_with(
            x1.clone(),
            Some(RnnState {
                h: h1.clone(),
                c: None,
            }),
            None,
            per_step,
        );
        assert!(s1.c.is_none());
        let grads1 = loss(out1.clone(), s1.h.clone()).backward();

        // burn's Gru with the same weights; PyTorch order r, z, n = reset, update, new.
        let w_ih = cell.w_ih.val();
        let w_hh = cell.w_hh.val();
        let b_ih = cell.b_ih.val();
        let b_hh = cell.b_hh.val();
        let mut gru = GruConfig::new(F, H, true).init(&dev());
        gru.reset_gate = gate(&w_ih, &w_hh, &b_ih, &b_hh, 0);
        gru.update_gate = gate(&w_ih, &w_hh, &b_ih, &b_hh, 1);
        gru.new_gate = gate(&w_ih, &w_hh, &b_ih, &b_hh, 2);
        let (x2, h2) = (leaf(&x), leaf(&h0));
        let out2 = gru.forward(x2.clone(), Some(h2.clone()));
        let last2 = out2.clone().narrow(1, T - 1, 1).reshape([B, H]);
        let grads2 = loss(out2.clone(), last2.clone()).backward();

        assert_close("output", out1, out2);
        assert_close("final h", s1.h, last2);
        assert_close("dL/dx", grad(&x1, &grads1), grad(&x2, &grads2));
        assert_close("dL/dh0", grad(&h1, &grads1), grad(&h2, &grads2));
        let gates =
            [&gru.reset_gate, &gru.update_gate, &gru.new_gate].map(|g| gate_grads(g, &grads2));
        let cat2 = |f: fn(&(Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>)) -> Tensor<2>| {
            Tensor::cat(gates.iter().map(f).collect(), 1)
        };
        let cat1 = |f: fn(&(Tensor<2>, Tensor<2>, Tensor<1>, Tensor<1>)) -> Tensor<1>| {
            Tensor::cat(gates.iter().map(f).collect(), 0)
        };
        assert_close("dL/dw_ih", grad(&w_ih, &grads1), cat2(|g| g.0.clone()));
        assert_close("dL/dw_hh", grad(&w_hh, &grads1), cat2(|g| g.1.clone()));
        assert_close("dL/db_ih", grad(&b_ih, &grads1), cat1(|g| g.2.clone()));
        assert_close("dL/db_hh", grad(&b_hh, &grads1), cat1(|g| g.3.clone()));
    }

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

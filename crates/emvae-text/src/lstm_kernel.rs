//! The LSTM recurrence as one operation on host memory, with its own backward pass (back-propagation
//! through time written out), for the CPU backends.
//!
//! [`crate::rnn::FusedLstm`] composes each step of tensor operations, so autodiff records some fifteen
//! operations and their buffers per step, and their backward passes, for a recurrence whose arithmetic
//! is one `[B, H] x [H, 4H]` product per step. Here the whole sequence is one autodiff node: the
//! forward pass keeps the gates, and the backward pass is PyTorch's (and cuDNN's) LSTM backward: per
//! step, from the upstream `dh`, `dc`
//!
//! ```text
//! do = dh tanh(c_t),  dc += dh o (1 - tanh(c_t)^2),  di = dc g,  dg = dc i,  df = dc c_{t-1}
//! da = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)],  dh_{t-1} = da W_hh^T,  dc_{t-1} = dc f
//! ```
//!
//! and at the end `dW_hh = sum_t h_{t-1}^T da_t` as one product. The input projection `x W_ih + b`
//! stays an ordinary (differentiable) tensor product; its gradient is `da`.
//!
//! The edge, which knows the backend, hands [`lstm_sequence`] for its backend to the model
//! ([`HostKernels`]); the model code names none.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, DispatchKindConversion, DispatchTensor};
use burn::tensor::{DType, Tensor, TensorData};
use emvae_core::simd::multiversion;

use crate::host::{f32s, gemm, host_data, host_values};
use crate::softmax::exp_nonpositive;

/// The LSTM recurrence over a sequence on host memory (see [`lstm_sequence`]); `None` where the
/// tensors are not the backend's the function was made for (the caller then composes tensor ops).
pub type LstmSequenceFn =
    fn(Tensor<3>, Tensor<2>, Tensor<2>, Tensor<2>, Option<&[usize]>) -> Option<Tensor<3>>;

/// Operations on tensors in host memory, given by the edge (which knows the backend) to the models.
#[derive(Clone, Copy, Debug)]
pub struct HostKernels {
    pub lstm: LstmSequenceFn,
}

/// Which kernels run is not a setting of the model: configs compare equal whatever they hold.
impl PartialEq for HostKernels {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// `σ(x) = 1 / (1 + e^-x)`, from `e^{-|x|}` so that the exponential never overflows.
#[inline(always)]
fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    let e = exp_nonpositive::<FMA>(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

/// `tanh(x) = sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|})`.
#[inline(always)]
fn tanh<const FMA: bool>(x: f32) -> f32 {
    let e = exp_nonpositive::<FMA>(-2.0 * x.abs());
    let t = (1.0 - e) / (1.0 + e);
    if x >= 0.0 { t } else { -t }
}

/// The body of [`cell_forward`].
#[inline(always)]
fn cell_forward_body<const FMA: bool>(
    a: &mut [f32],
    h: &mut [f32],
    c: &mut [f32],
    tanh_c: &mut [f32],
) {
    let n = h.len();
    let (ifo, rest) = a.split_at_mut(2 * n);
    let (g, o) = rest.split_at_mut(n);
    for x in ifo.iter_mut().chain(o.iter_mut()) {
        *x = sigmoid::<FMA>(*x);
    }
    for x in g.iter_mut() {
        *x = tanh::<FMA>(*x);
    }
    let (i, f) = ifo.split_at(n);
    for k in 0..n {
        c[k] = f[k] * c[k] + i[k] * g[k];
        tanh_c[k] = tanh::<FMA>(c[k]);
        h[k] = o[k] * tanh_c[k];
    }
}

multiversion! {
    /// One row's step: the pre-activations `a` `[4H]` (`i, f, g, o`) become the gates, and the state
    /// `h`, `c` `[H]` is advanced; `tanh(c')` is kept for the backward pass.
    fn cell_forward(a: &mut [f32], h: &mut [f32], c: &mut [f32], tanh_c: &mut [f32])
        => cell_forward_body::<FMA>
}

/// The body of [`cell_backward`].
#[inline(always)]
fn cell_backward_body(
    gates: &[f32],
    tanh_c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    da: &mut [f32],
) {
    let n = dh.len();
    let (i, rest) = gates.split_at(n);
    let (f, rest) = rest.split_at(n);
    let (g, o) = rest.split_at(n);
    let (da_i, rest) = da.split_at_mut(n);
    let (da_f, rest) = rest.split_at_mut(n);
    let (da_g, da_o) = rest.split_at_mut(n);
    for k in 0..n {
        let t = tanh_c[k];
        let d_o = dh[k] * t;
        let d_c = dc[k] + dh[k] * o[k] * (1.0 - t * t);
        da_i[k] = d_c * g[k] * i[k] * (1.0 - i[k]);
        da_f[k] = d_c * c_prev[k] * f[k] * (1.0 - f[k]);
        da_g[k] = d_c * i[k] * (1.0 - g[k] * g[k]);
        da_o[k] = d_o * o[k] * (1.0 - o[k]);
        dc[k] = d_c * f[k];
    }
}

multiversion! {
    /// One row's step backwards: from the gates `[4H]`, `tanh(c_t)`, `c_{t-1}` and the upstream `dh`,
    /// `dc` `[H]`, the pre-activations' gradient `da` `[4H]`; `dc` becomes `dc_{t-1}`.
    fn cell_backward(
        gates: &[f32],
        tanh_c: &[f32],
        c_prev: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        da: &mut [f32],
    ) => cell_backward_body
}

/// What the forward pass keeps for the backward pass. Shapes: `B` rows, `T` steps, `H` hidden.
#[derive(Debug)]
pub(crate) struct Tape {
    batch: usize,
    steps: usize,
    hidden: usize,
    /// Valid steps per row.
    lengths: Vec<usize>,
    /// `[H, 4H]`.
    w_hh: Vec<f32>,
    /// `[B, T, 4H]`: the gates `i, f, g, o` after their nonlinearities.
    gates: Vec<f32>,
    /// `[B, T, H]`: the state before each step.
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    /// `[B, T, H]`: `tanh(c_t)` after each step.
    tanh_c: Vec<f32>,
}

/// Gradients of the recurrence's inputs.
pub(crate) struct TapeGradients {
    /// `[B, T, 4H]`.
    pub xp: Vec<f32>,
    /// `[H, 4H]`.
    pub w_hh: Vec<f32>,
    /// `[B, H]` each.
    pub h0: Vec<f32>,
    pub c0: Vec<f32>,
}

impl Tape {
    /// Runs the recurrence `a_t = xp_t + h_{t-1} W_hh`, gates, `c_t = f c_{t-1} + i g`,
    /// `h_t = o tanh(c_t)` over `xp` `[B, T, 4H]` from `(h0, c0)` `[B, H]`; a row's state is frozen
    /// after its `lengths[b]` steps. Returns the tape and `[B, T + 2, H]`: the outputs (zeros past each
    /// row's end), then the final `h` and `c`.
    pub(crate) fn forward(
        xp: &[f32],
        w_hh: Vec<f32>,
        h0: &[f32],
        c0: &[f32],
        (batch, steps, hidden): (usize, usize, usize),
        lengths: Vec<usize>,
    ) -> (Self, Vec<f32>) {
        let g4 = 4 * hidden;
        let (mut h, mut c) = (h0.to_vec(), c0.to_vec());
        let mut gates = vec![0.0f32; batch * steps * g4];
        let mut h_prev = vec![0.0f32; batch * steps * hidden];
        let mut c_prev = vec![0.0f32; batch * steps * hidden];
        let mut tanh_c = vec![0.0f32; batch * steps * hidden];
        let mut out = vec![0.0f32; batch * (steps + 2) * hidden];
        let mut a = vec![0.0f32; batch * g4];
        for t in 0..steps {
            for b in 0..batch {
                let at = (b * steps + t) * hidden;
                h_prev[at..at + hidden].copy_from_slice(&h[b * hidden..(b + 1) * hidden]);
                c_prev[at..at + hidden].copy_from_slice(&c[b * hidden..(b + 1) * hidden]);
                let x = (b * steps + t) * g4;
                a[b * g4..(b + 1) * g4].copy_from_slice(&xp[x..x + g4]);
            }
            // a^T [4H, B] += W_hh^T h^T: W_hh [H, 4H] row-major is W_hh^T column-major, which gemm reads
            // in place (a [B, H] x [H, 4H] product would copy W_hh into panels at every step).
            gemm(
                g4,
                batch,
                hidden,
                &mut a,
                (g4, 1),
                true,
                &w_hh,
                (g4, 1),
                &h,
                (hidden, 1),
            );
            for b in 0..batch {
                if t >= lengths[b] {
                    continue;
                }
                let row = b * hidden..(b + 1) * hidden;
                let at = (b * steps + t) * hidden;
                cell_forward(
                    &mut a[b * g4..(b + 1) * g4],
                    &mut h[row.clone()],
                    &mut c[row.clone()],
                    &mut tanh_c[at..at + hidden],
                );
                let x = (b * steps + t) * g4;
                gates[x..x + g4].copy_from_slice(&a[b * g4..(b + 1) * g4]);
                let o = (b * (steps + 2) + t) * hidden;
                out[o..o + hidden].copy_from_slice(&h[row]);
            }
        }
        for b in 0..batch {
            let o = (b * (steps + 2) + steps) * hidden;
            out[o..o + hidden].copy_from_slice(&h[b * hidden..(b + 1) * hidden]);
            out[o + hidden..o + 2 * hidden].copy_from_slice(&c[b * hidden..(b + 1) * hidden]);
        }
        let tape = Self {
            batch,
            steps,
            hidden,
            lengths,
            w_hh,
            gates,
            h_prev,
            c_prev,
            tanh_c,
        };
        (tape, out)
    }

    /// Back-propagation through time from the gradient `dy` `[B, T + 2, H]` of [`Tape::forward`]'s
    /// output.
    pub(crate) fn backward(&self, dy: &[f32]) -> TapeGradients {
        let (batch, steps, hidden) = (self.batch, self.steps, self.hidden);
        let g4 = 4 * hidden;
        let mut dh = vec![0.0f32; batch * hidden];
        let mut dc = vec![0.0f32; batch * hidden];
        for b in 0..batch {
            let o = (b * (steps + 2) + steps) * hidden;
            dh[b * hidden..(b + 1) * hidden].copy_from_slice(&dy[o..o + hidden]);
            dc[b * hidden..(b + 1) * hidden].copy_from_slice(&dy[o + hidden..o + 2 * hidden]);
        }
        let mut dxp = vec![0.0f32; batch * steps * g4];
        let mut dh_prev = vec![0.0f32; batch * hidden];
        // W_hh^T [4H, H] row-major.
        let mut w_t = vec![0.0f32; g4 * hidden];
        for i in 0..hidden {
            for j in 0..g4 {
                w_t[j * hidden + i] = self.w_hh[i * g4 + j];
            }
        }
        for t in (0..steps).rev() {
            for b in 0..batch {
                if t >= self.lengths[b] {
                    continue;
                }
                let row = b * hidden..(b + 1) * hidden;
                let o = (b * (steps + 2) + t) * hidden;
                for (d, u) in dh[row.clone()].iter_mut().zip(&dy[o..o + hidden]) {
                    *d += u;
                }
                let at = (b * steps + t) * hidden;
                let x = (b * steps + t) * g4;
                cell_backward(
                    &self.gates[x..x + g4],
                    &self.tanh_c[at..at + hidden],
                    &self.c_prev[at..at + hidden],
                    &dh[row.clone()],
                    &mut dc[row],
                    &mut dxp[x..x + g4],
                );
            }
            // dh_{t-1} = da_t W_hh^T for the rows that stepped (the others pass dh through), as
            // dh_{t-1}^T = W_hh da_t^T with W_hh read in place from its transpose (see forward).
            gemm(
                hidden,
                batch,
                g4,
                &mut dh_prev,
                (hidden, 1),
                false,
                &w_t,
                (hidden, 1),
                &dxp[t * g4..],
                (steps * g4, 1),
            );
            for b in 0..batch {
                if t < self.lengths[b] {
                    let row = b * hidden..(b + 1) * hidden;
                    dh[row.clone()].copy_from_slice(&dh_prev[row]);
                }
            }
        }
        // dW_hh = sum over rows and steps of h_{t-1}^T da_t: [H, B T] x [B T, 4H].
        let mut dw = vec![0.0f32; hidden * g4];
        gemm(
            hidden,
            g4,
            batch * steps,
            &mut dw,
            (1, g4),
            false,
            &self.h_prev,
            (hidden, 1),
            &dxp,
            (1, g4),
        );
        TapeGradients {
            xp: dxp,
            w_hh: dw,
            h0: dh,
            c0: dc,
        }
    }
}

/// The autodiff node of [`lstm_sequence`]: parents `xp`, `w_hh`, `h0`, `c0`.
#[derive(Debug)]
struct LstmBackward;

impl<B: Backend> Backward<B, 4> for LstmBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = (Arc<Tape>, B::Device);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (tape, device) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let dy = host_data(Tensor::<3>::from_primitive::<B>(dy));
        let g = tape.backward(f32s(&dy));
        let (b, t, h) = (tape.batch, tape.steps, tape.hidden);
        let tensor = |values: Vec<f32>, shape: Vec<usize>| {
            B::float_from_data(TensorData::new(values, shape), &device)
        };
        let [xp, w_hh, h0, c0] = ops.parents;
        if let Some(node) = xp {
            grads.register::<B>(node.id, tensor(g.xp, vec![b, t, 4 * h]));
        }
        if let Some(node) = w_hh {
            grads.register::<B>(node.id, tensor(g.w_hh, vec![h, 4 * h]));
        }
        if let Some(node) = h0 {
            grads.register::<B>(node.id, tensor(g.h0, vec![b, h]));
        }
        if let Some(node) = c0 {
            grads.register::<B>(node.id, tensor(g.c0, vec![b, h]));
        }
    }
}

/// The LSTM recurrence over `xp` `[B, T, 4H]` (the input projection with the bias, gates `i, f, g, o`)
/// with `w_hh` `[H, 4H]` from `(h0, c0)` `[B, H]`, each row's state frozen after its `lengths` steps
/// (all `T` when `None`): `[B, T + 2, H]`, the outputs (zeros past each row's end) then the final `h`
/// and `c`. One autodiff node when the tensors are tracked. `None` when the tensors are not f32
/// tensors of `B` (or its autodiff without checkpointing).
pub fn lstm_sequence<B: Backend>(
    xp: Tensor<3>,
    w_hh: Tensor<2>,
    h0: Tensor<2>,
    c0: Tensor<2>,
    lengths: Option<&[usize]>,
) -> Option<Tensor<3>>
where
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B>>,
{
    let [batch, steps, g4] = xp.dims();
    let hidden = g4 / 4;
    if [xp.dtype(), w_hh.dtype(), h0.dtype(), c0.dtype()]
        .iter()
        .any(|&d| d != DType::F32)
    {
        return None;
    }
    // The tensors as `B`'s (autodiff) primitives, checked before any work: `None` falls back.
    let tracked = if xp.is_autodiff() {
        let convert = |x: Tensor<2>| x.try_into_primitive::<Autodiff<B>>().ok();
        Some((
            xp.clone().try_into_primitive::<Autodiff<B>>().ok()?,
            convert(w_hh.clone())?,
            convert(h0.clone())?,
            convert(c0.clone())?,
        ))
    } else {
        xp.clone().try_into_primitive::<B>().ok()?;
        None
    };
    let lengths = lengths.map_or_else(|| vec![steps; batch], <[usize]>::to_vec);
    let plain_device = xp.device();
    let (tape, out) = Tape::forward(
        f32s(&host_data(xp)),
        host_values(w_hh),
        f32s(&host_data(h0)),
        f32s(&host_data(c0)),
        (batch, steps, hidden),
        lengths,
    );
    let out_shape = [batch, steps + 2, hidden];
    let Some((xp, w_hh, h0, c0)) = tracked else {
        return Some(Tensor::from_data(
            TensorData::new(out, out_shape),
            &plain_device,
        ));
    };
    let device = burn::backend::TensorMetadata::device(&xp);
    let output = B::float_from_data(TensorData::new(out, out_shape), &device);
    let node = match LstmBackward
        .prepare::<NoCheckpointing>([xp.node(), w_hh.node(), h0.node(), c0.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((Arc::new(tape), device), output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Some(Tensor::from_primitive::<Autodiff<B>>(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rnn::{CellKind, Rnn, RnnState};
    use burn::module::Module;
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;

    /// `max |a - b| <= tol * max |b|`.
    fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}[{k}]: {x} vs {y} (scale {scale})"
            );
        }
    }

    #[test]
    fn the_host_recurrence_matches_the_composed_cells_in_value_and_every_gradient() {
        let plain = Device::flex();
        let device = plain.clone().autodiff();
        let kernels = Some(HostKernels {
            lstm: lstm_sequence::<burn::backend::Flex>,
        });
        // Two bidirectional layers, ragged rows (one of full length, one empty), given initial states.
        let (b, t, f, h) = (4, 6, 5, 7);
        let lengths = [6, 3, 1, 4];
        let mut rng = emvae_core::rng::Rng::seed_from_u64(7);
        let composed = Rnn::new(CellKind::Lstm, f, h, 2, true, &mut rng, &device);
        let fused = composed.clone().with_kernels(kernels);
        let random =
            |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &plain);
        let x0 = random([b, t, f]);
        let h0 = random([4, b, h]);
        let c0 = random([4, b, h]);
        let w_out = random([b, t, 2 * h]);
        let w_fin = random([4, b, 2 * h]);
        // The four cells' initial states, `[4, B, H]` each for h and c.
        let states = |h0: &Tensor<3>, c0: &Tensor<3>| -> Vec<RnnState> {
            (0..4)
                .map(|k| RnnState {
                    h: h0.clone().narrow(0, k, 1).reshape([b, h]),
                    c: Some(c0.clone().narrow(0, k, 1).reshape([b, h])),
                })
                .collect()
        };
        let run = |rnn: &Rnn| {
            let x = Tensor::from_inner(x0.clone()).require_grad();
            let h0 = Tensor::from_inner(h0.clone()).require_grad();
            let c0 = Tensor::from_inner(c0.clone()).require_grad();
            let (out, finals) = rnn.forward(x.clone(), Some(&lengths), Some(states(&h0, &c0)));
            let fin: Vec<Tensor<2>> = finals
                .iter()
                .map(|s| Tensor::cat(vec![s.h.clone(), s.c.clone().expect("an LSTM cell")], 1))
                .collect();
            let fin = Tensor::stack::<3>(fin, 0);
            let loss = (out.clone() * Tensor::from_inner(w_out.clone())).sum()
                + (fin.clone() * Tensor::from_inner(w_fin.clone())).sum();
            let grads = loss.backward();
            let mut all = vec![
                ("out", host_values(out)),
                ("finals", host_values(fin)),
                ("dx", host_values(x.grad(&grads).expect("dx"))),
                ("dh0", host_values(h0.grad(&grads).expect("dh0"))),
                ("dc0", host_values(c0.grad(&grads).expect("dc0"))),
            ];
            for cell in &rnn.lstm {
                all.push((
                    "dw_ih",
                    host_values(cell.w_ih.val().grad(&grads).expect("dw_ih")),
                ));
                all.push((
                    "dw_hh",
                    host_values(cell.w_hh.val().grad(&grads).expect("dw_hh")),
                ));
                all.push((
                    "dbias",
                    host_values(cell.bias.val().grad(&grads).expect("dbias")),
                ));
            }
            all
        };
        // The kernel takes these tensors (the comparison below is not with itself through a fallback).
        let xp = Tensor::<3>::random([b, t, 4 * h], Distribution::Default, &device).require_grad();
        let state = || Tensor::<2>::zeros([b, h], &device);
        let w_hh = Tensor::<2>::random([h, 4 * h], Distribution::Default, &device).require_grad();
        let taken = lstm_sequence::<burn::backend::Flex>(xp.clone(), w_hh, state(), state(), None);
        assert_eq!(taken.map(|y| y.dims()), Some([b, t + 2, h]));
        let taken = lstm_sequence::<burn::backend::Flex>(
            xp.inner(),
            Tensor::zeros([h, 4 * h], &plain),
            Tensor::zeros([b, h], &plain),
            Tensor::zeros([b, h], &plain),
            Some(&lengths),
        );
        assert!(taken.is_some());
        let want = run(&composed);
        let got = run(&fused);
        for ((name, a), (_, b)) in got.iter().zip(&want) {
            assert_close(name, a, b, 1e-5);
        }
        // Padded outputs are zero, and evaluation (no autodiff) gives the same values.
        let out = &got[0].1;
        for (row, &n) in lengths.iter().enumerate() {
            for step in n..t {
                let at = (row * t + step) * 2 * h;
                assert!(
                    out[at..at + 2 * h].iter().all(|&v| v == 0.0),
                    "row {row} step {step}"
                );
            }
        }
        let eval = fused.valid();
        let (out, _) = eval.forward(x0.clone(), Some(&lengths), Some(states(&h0, &c0)));
        assert_close("evaluation", &host_values(out), &got[0].1, 1e-6);
    }
}

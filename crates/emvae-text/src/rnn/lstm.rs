//! The fused LSTM cell (see the module notes of [`crate::rnn`]).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, activation};
use emvae_core::rng::Rng;
use emvae_vae::nn::param;

use super::RnnState;
use super::steps::{
    blend, collect_outputs, doubled_block, mask_steps, project_per_step, split_steps,
    tanh_from_sigmoid, tanh_via_sigmoid, uniform,
};
use crate::lstm_kernel::LstmSequenceFn;

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

#[cfg(test)]
mod tests {
    use burn::nn::{LstmConfig, LstmState};
    use burn::tensor::Tensor;
    use emvae_core::rng::Rng;
    use rand::SeedableRng;

    use super::FusedLstm;
    use crate::rnn::RnnState;
    use crate::rnn::test_util::*;

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
}

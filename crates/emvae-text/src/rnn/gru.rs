//! The fused GRU cell (see the module notes of [`crate::rnn`]).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, activation};
use emvae_core::rng::Rng;
use emvae_vae::nn::param;

use super::RnnState;
use super::steps::{
    blend, collect_outputs, doubled_block, mask_steps, project_per_step, split_steps,
    tanh_from_sigmoid, uniform,
};

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

#[cfg(test)]
mod tests {
    use burn::nn::GruConfig;
    use burn::tensor::Tensor;
    use emvae_core::rng::Rng;
    use rand::SeedableRng;

    use super::FusedGru;
    use crate::rnn::RnnState;
    use crate::rnn::test_util::*;

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
}

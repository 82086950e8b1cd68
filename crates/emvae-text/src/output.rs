//! The decoder's output layer on the host, for tensors in host memory (a CPU backend, as the edge says
//! through [`crate::TextVaeConfig::host_kernels`]): each sentence's
//! `R = sum_t m_t log softmax(h_t W + b + s)[x_t]` (`m_t` the mask, `s` the sentence's shift of the
//! logits by its label, if any), with the logits never becoming a tensor.
//!
//! With `D_t = m_t (e_{x_t} - softmax(h_t W + b + s))`, `R`'s gradients are
//! `dR/dh_t = D_t W^T`, `dR/dW = sum_t h_t^T D_t`, `dR/db = dR/ds = sum_t D_t`, and whatever the
//! objective does with `R`, it reaches the layer as one scalar per sentence. So, with `sg` the
//! stop-gradient, `D` a constant and `A = D W^T`, the surrogate
//! `U = sum_t [h_t . sg(A_t) + sg(h_t) . A_t] + (sum_t D_t) . (b + s)`
//! has `R`'s gradient, and `U - sg(U) + R` carries it with `R`'s value. The autodiff graph holds one
//! `[N, V]` constant and one matmul with it, where burn's own layer holds the logits, their softmax and
//! the `[N, V]` buffers of their backward pass (on burn-flex each new buffer is also zeroed and copied
//! once more). The logits are one `gemm` into a host buffer that becomes `D` in place.

use burn::nn::Linear;
use burn::tensor::{DType, Tensor, TensorData};

use crate::host::{f32s, gemm_new, host_data, host_values};

/// Whether [`sentence_log_prob`] can run on these decoder outputs (f32; other types take burn's layer).
pub(crate) fn supported(h: &Tensor<2>) -> bool {
    h.dtype() == DType::F32
}

/// `R [rows]`: each sentence's `sum_t m_t log p(x_t | ...)` through the layer `out`, for decoder outputs
/// `h` `[rows * t, H]` (row `r * t + j` is sentence `r`'s position `j`), the per-sentence logit
/// `shift` `[rows, V]`, and the batch's `tokens` `[batch * t]` and `lengths` `[batch]` (sentence `r`
/// is data row `r % batch`: several samples' rows, sample-major). Differentiable in `h`, the layer
/// and `shift` when `h` is tracked (see the module notes).
pub(crate) fn sentence_log_prob(
    h: Tensor<2>,
    out: &Linear,
    shift: Option<Tensor<2>>,
    tokens: &[usize],
    lengths: &[usize],
    rows: usize,
) -> Tensor<1> {
    let [n, hidden] = h.dims();
    let weight = out.weight.val();
    let v = weight.dims()[1];
    let t = n / rows;
    let batch = lengths.len();
    let grad = h.is_autodiff();
    let device = h.device();

    // Each sentence's offset of the logits: the bias plus its shift.
    let mut offsets = match &shift {
        Some(s) => host_values(s.clone()),
        None => vec![0.0; v],
    };
    if let Some(bias) = &out.bias {
        let bias = host_values(bias.val());
        for row in offsets.chunks_exact_mut(v) {
            row.iter_mut().zip(&bias).for_each(|(o, b)| *o += b);
        }
    }
    let offset_row: Vec<usize> = (0..n)
        .map(|i| if shift.is_some() { i / t } else { 0 })
        .collect();
    let sentence: Vec<usize> = (0..n).map(|i| i / t).collect();
    let targets: Vec<usize> = (0..n)
        .map(|i| {
            let (d, j) = ((i / t) % batch, i % t);
            if j < lengths[d] {
                tokens[d * t + j]
            } else {
                usize::MAX
            }
        })
        .collect();

    let (h_data, w_data) = (host_data(h.clone()), host_data(weight.clone()));
    let (h_values, w_values) = (f32s(&h_data), f32s(&w_data));
    let mut logits = gemm_new((n, v, hidden), h_values, (1, hidden), w_values, (1, v));
    let mut log_p = vec![0.0f32; n];
    let mut dsum = if grad {
        vec![0.0f32; rows * v]
    } else {
        Vec::new()
    };
    crate::softmax::log_softmax_at_rows(
        &mut logits,
        v,
        &offsets,
        &offset_row,
        &targets,
        &mut log_p,
        &sentence,
        &mut dsum,
    );
    let values: Vec<f32> = log_p
        .chunks_exact(t)
        .map(|row| row.iter().map(|&x| f64::from(x)).sum::<f64>() as f32)
        .collect();
    let value = Tensor::<1>::from_data(TensorData::new(values, [rows]), &device);
    if !grad {
        return value;
    }

    let d = Tensor::<2>::from_data(TensorData::new(logits, [n, v]), &device);
    // A = (W D^T)^T rather than D W^T: W's gradient then comes out in W's own layout, not as a
    // transposed view that the optimiser would first copy.
    let a = weight.matmul(d.transpose()).transpose();
    let mut u = (h.clone() * a.clone().detach() + h.detach() * a)
        .reshape([rows, t * hidden])
        .sum_dim(1);
    let dsum = Tensor::<2>::from_data(TensorData::new(dsum, [rows, v]), &device);
    if let Some(bias) = &out.bias {
        u = u + dsum.clone().matmul(bias.val().reshape([v, 1]));
    }
    if let Some(s) = shift {
        u = u + (dsum * s).sum_dim(1);
    }
    let u = u.reshape([rows]);
    u.clone() - u.detach() + value
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Device, Distribution, Int, activation};

    /// burn's own layer: logits, log-softmax, gathered at the targets, masked and summed per sentence.
    fn direct(
        h: Tensor<2>,
        out: &Linear,
        shift: Tensor<2>,
        tokens: &[usize],
        lengths: &[usize],
        rows: usize,
    ) -> Tensor<1> {
        let [n, _] = h.dims();
        let (t, batch, v) = (n / rows, lengths.len(), shift.dims()[1]);
        let logits =
            (out.forward(h).reshape([rows, t, v]) + shift.reshape([rows, 1, v])).reshape([n, v]);
        let (ids, mask): (Vec<i64>, Vec<f32>) = (0..n)
            .map(|i| {
                let (d, j) = ((i / t) % batch, i % t);
                (
                    tokens[d * t + j] as i64,
                    f32::from(u8::from(j < lengths[d])),
                )
            })
            .unzip();
        let device = logits.device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 1]), &device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, t]), &device);
        let log_p = activation::log_softmax(logits, 1).gather(1, ids);
        (log_p.reshape([rows, t]) * mask).sum_dim(1).reshape([rows])
    }

    #[test]
    fn the_host_layer_matches_burns_in_value_and_every_gradient() {
        let plain = Device::flex();
        let device = plain.clone().autodiff();
        // Two sentences seen twice (two samples, sample-major), three positions, one of them padding.
        let (batch, samples, t, hidden, v) = (2, 2, 3, 5, 37);
        let rows = batch * samples;
        let random = |shape: [usize; 2], sd: f64| {
            Tensor::<2>::random(shape, Distribution::Normal(0.0, sd), &plain)
        };
        let h0 = random([rows * t, hidden], 1.0);
        let w0 = random([hidden, v], 1.0);
        let b0 = random([1, v], 1.0).reshape([v]);
        let s0 = random([rows, v], 0.5);
        let tokens = [3, 36, 0, 7, 7, 12];
        let lengths = [3, 2];
        let g = Tensor::<1>::from_data(
            TensorData::new(vec![1.0f32, -0.5, 2.0, 0.25], [rows]),
            &device,
        );
        let run = |host: bool| {
            let h = Tensor::from_inner(h0.clone()).require_grad();
            let w = Tensor::from_inner(w0.clone()).require_grad();
            let b = Tensor::from_inner(b0.clone()).require_grad();
            let s = Tensor::from_inner(s0.clone()).require_grad();
            let out = Linear {
                weight: Param::from_tensor(w.clone()),
                bias: Some(Param::from_tensor(b.clone())),
            };
            let r = if host {
                sentence_log_prob(h.clone(), &out, Some(s.clone()), &tokens, &lengths, rows)
            } else {
                direct(h.clone(), &out, s.clone(), &tokens, &lengths, rows)
            };
            let value = host_values(r.clone());
            let grads = (r * g.clone()).sum().backward();
            let grad = |x: &Tensor<2>| host_values(x.grad(&grads).expect("a gradient"));
            let gb = host_values(b.grad(&grads).expect("a gradient"));
            (value, [grad(&h), grad(&w), gb, grad(&s)])
        };
        let (want, want_grads) = run(false);
        let (got, got_grads) = run(true);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "value {a} vs {b}");
        }
        for (name, (got, want)) in ["h", "W", "b", "shift"]
            .iter()
            .zip(got_grads.iter().zip(&want_grads))
        {
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() <= 1e-5 * scale, "d/d{name}: {a} vs {b}");
            }
        }
        // Without autodiff (evaluation), and without a shift (the plain language model).
        let out = Linear {
            weight: Param::from_tensor(w0.clone()),
            bias: Some(Param::from_tensor(b0.clone())),
        };
        let plain_value = host_values(sentence_log_prob(
            h0.clone(),
            &out,
            Some(s0.clone()),
            &tokens,
            &lengths,
            rows,
        ));
        assert_eq!(plain_value, got);
        let zero = Tensor::<2>::zeros([rows, v], &plain);
        let unshifted = host_values(sentence_log_prob(
            h0.clone(),
            &out,
            None,
            &tokens,
            &lengths,
            rows,
        ));
        let want = host_values(direct(h0, &out, zero, &tokens, &lengths, rows));
        for (a, b) in unshifted.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                "unshifted {a} vs {b}"
            );
        }
    }
}

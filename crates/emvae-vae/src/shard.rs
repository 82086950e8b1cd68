//! Data-parallel steps on the CPU's cores: a minibatch cut into shards whose gradients are computed
//! concurrently, one thread each, and summed.
//!
//! With L(θ) = (1/B) Σ_b ℓ_b(θ) and shards S_1 … S_K of sizes B_k, the gradient is
//! ∇L = Σ_k (B_k / B) ∇[(1/B_k) Σ_{b ∈ S_k} ℓ_b], so each shard differentiates its own mean loss
//! weighted by its share of the rows. The shards are a function of the configuration only (never of the
//! machine's core count) and their gradients are summed in shard order, so a run's numbers do not
//! depend on how many cores ran it. Free bits are the one batch-level term: they clamp each shard's
//! average KL, as in data-parallel training elsewhere.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use emvae_core::tensor::tensor_to_vec;

use crate::amortized::{AmortizedModel, TrainData};
use crate::objective::{BatchTerms, ObjectiveSpec, batch_terms};

/// Metrics of one step: `(loss, bound, reconstruction, kl)` averaged over the batch.
pub type StepMetrics = (f64, f64, f64, f64);

/// Mean of a `[rows]` tensor on the host.
pub fn mean_of(t: &Tensor<1>) -> f64 {
    tensor_to_vec(t.clone().mean())[0]
}

pub fn metrics_of(terms: &BatchTerms) -> StepMetrics {
    (
        mean_of(&terms.loss),
        mean_of(&terms.bound),
        mean_of(&terms.rec),
        mean_of(&terms.kl),
    )
}

/// One shard of a minibatch: its index, its rows, its share `B_k / B` of the batch, and the model it
/// differentiates (the model itself for an unsharded step, otherwise a replica of it).
pub struct Shard<'a, M> {
    pub index: usize,
    pub rows: &'a [usize],
    pub weight: f64,
    pub model: &'a M,
}

impl<M> Shard<'_, M> {
    /// `loss` weighted by the shard's share, ready for `backward` (untouched for a whole batch).
    pub fn weigh(&self, loss: Tensor<1>) -> Tensor<1> {
        if self.weight == 1.0 {
            loss
        } else {
            loss.mul_scalar(self.weight)
        }
    }

    /// Batch-average metrics weighted by the shard's share, so the shards' sum is the batch's.
    pub fn weigh_metrics(&self, (loss, bound, rec, kl): StepMetrics) -> StepMetrics {
        let w = self.weight;
        (loss * w, bound * w, rec * w, kl * w)
    }
}

/// Runs `work` on each of `shards` contiguous shards of `rows` (at most one per row) concurrently, one
/// thread each, and returns the results in shard order. One shard runs on `model` itself; several run
/// each on a replica whose parameters are fresh leaves of the autodiff graph: shards sharing the
/// model's own leaves would be merged by burn's autodiff into one graph (and one lock). Replicas keep
/// the parameters' ids and which of them are trainable, so their gradients apply to `model`.
pub fn map_shards<M: AmortizedModel, R: Send>(
    model: &M,
    rows: &[usize],
    shards: usize,
    work: &(dyn Fn(Shard<'_, M>) -> R + Sync),
) -> Vec<R> {
    let shards = shards.clamp(1, rows.len().max(1));
    if shards == 1 {
        return vec![work(Shard {
            index: 0,
            rows,
            weight: 1.0,
            model,
        })];
    }
    let total = rows.len() as f64;
    let run_shard = |index: usize, part: &[usize]| {
        let replica = model.clone().map(&mut FreshLeaves);
        work(Shard {
            index,
            rows: part,
            weight: part.len() as f64 / total,
            model: &replica,
        })
    };
    let parts = split_evenly(rows, shards);
    std::thread::scope(|scope| {
        let run_shard = &run_shard;
        let handles: Vec<_> = parts[1..]
            .iter()
            .enumerate()
            .map(|(i, part)| scope.spawn(move || run_shard(i + 1, part)))
            .collect();
        let mut results = vec![run_shard(0, parts[0])];
        for handle in handles {
            match handle.join() {
                Ok(r) => results.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

/// The shards' (weighted) metrics summed: the batch's averages.
pub fn sum_metrics(shards: impl IntoIterator<Item = StepMetrics>) -> StepMetrics {
    let mut shards = shards.into_iter();
    let first = shards.next().unwrap_or_default();
    shards.fold(first, |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3))
}

/// The shards' gradients of `model`'s parameters, summed in shard order (one shard's as they are).
pub fn sum_gradients<M: Module>(model: &M, shards: Vec<GradientsParams>) -> GradientsParams {
    if shards.len() == 1 {
        return shards.into_iter().next().unwrap_or_default();
    }
    let mut sum = GradSum {
        shards,
        total: GradientsParams::new(),
    };
    model.visit(&mut sum);
    sum.total
}

/// What one amortized step differentiates: the model, its data and the objective.
pub struct ShardedStep<'a, M: AmortizedModel> {
    pub model: &'a M,
    pub data: &'a M::Data,
    /// The epoch the batches are drawn for.
    pub epoch: u64,
    pub device: &'a Device,
    pub spec: &'a ObjectiveSpec,
    /// Stop the gradients into the guide (the decoder step after an aggressive inner loop).
    pub detach_guide: bool,
}

impl<M: AmortizedModel> ShardedStep<'_, M> {
    /// Metrics and gradients of the minibatch `rows` in `shards` shards ([`map_shards`]);
    /// `noise(shard, rows)` gives a shard's noise `[samples * rows, latent]`.
    pub fn gradients(
        &self,
        rows: &[usize],
        shards: usize,
        noise: &(dyn Fn(usize, usize) -> Tensor<2> + Sync),
    ) -> (StepMetrics, GradientsParams) {
        let results = map_shards(self.model, rows, shards, &|s: Shard<'_, M>| {
            let x = self.data.batch(s.rows, self.epoch, self.device);
            let q = s.model.posterior(&x);
            let q = if self.detach_guide { q.detach() } else { q };
            let eps = noise(s.index, s.rows.len());
            let terms = batch_terms(s.model, &q, &x, eps, self.spec);
            let metrics = s.weigh_metrics(metrics_of(&terms));
            let grads = s.weigh(terms.loss).backward();
            (metrics, GradientsParams::from_grads(grads, s.model))
        });
        let (metrics, grads): (Vec<_>, Vec<_>) = results.into_iter().unzip();
        (sum_metrics(metrics), sum_gradients(self.model, grads))
    }
}

/// Maps every float parameter to a fresh autodiff leaf of the same value and id.
struct FreshLeaves;

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let tracked = t.is_require_grad();
            let leaf = t.detach();
            if tracked { leaf.require_grad() } else { leaf }
        })
    }
}

/// Sums the shards' gradients of each visited parameter, in shard order.
struct GradSum {
    shards: Vec<GradientsParams>,
    total: GradientsParams,
}

impl ModuleVisitor for GradSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let parts: Vec<Tensor<D>> = self
            .shards
            .iter_mut()
            .filter_map(|grads| grads.remove::<D>(param.id))
            .collect();
        if let Some(g) = sum_in_order(parts) {
            self.total.register(param.id, g);
        }
    }
}

/// `parts[0] + parts[1] + ...`. f32 values are added in one pass on the host into the first part's
/// buffer (the optimiser reads every gradient on the host anyway, see [`crate::adam`]): the backend's
/// additions each allocate a new tensor, and on flex zero it and copy it once more, which on a sentence
/// VAE's embedding-sized gradients was a tenth of a two-shard step.
fn sum_in_order<const D: usize>(parts: Vec<Tensor<D>>) -> Option<Tensor<D>> {
    let mut parts = parts.into_iter();
    let first = parts.next()?;
    let rest: Vec<Tensor<D>> = parts.collect();
    if rest.is_empty() {
        return Some(first);
    }
    if first.dtype() != burn::tensor::DType::F32 {
        return Some(rest.into_iter().fold(first, |acc, g| acc + g));
    }
    let device = first.device();
    let mut acc = first.into_data();
    let values = acc
        .as_mut_slice::<f32>()
        .expect("an f32 tensor holds f32 values");
    for g in rest {
        let g = g.into_data();
        let g = g.as_slice::<f32>().expect("an f32 tensor holds f32 values");
        add_assign(values, g);
    }
    Some(Tensor::from_data(acc, &device))
}

#[inline(always)]
fn add_assign_body(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

emvae_core::multiversion! {
    /// `acc += x`, element by element.
    fn add_assign(acc: &mut [f32], x: &[f32]) => add_assign_body
}

/// `rows` cut into `parts` contiguous pieces whose sizes differ by at most one.
fn split_evenly(rows: &[usize], parts: usize) -> Vec<&[usize]> {
    let (base, extra) = (rows.len() / parts, rows.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = base + usize::from(p < extra);
        out.push(&rows[start..start + len]);
        start += len;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{KlEstimator, ObjectiveKind, VaeConfig};
    use crate::data::{Binarization, VaeData, normal_noise};
    use crate::train::gradient_values;
    use crate::vae::Vae;
    use burn::module::Module;
    use emvae_core::data::Matrix;

    /// Every gradient of `model`'s parameters, in visiting order; `grads` holds no other.
    fn flat<M: Module>(model: &M, mut grads: GradientsParams) -> Vec<Vec<f64>> {
        let values = gradient_values(model, &mut grads)
            .into_iter()
            .map(|g| g.expect("every parameter has a gradient"))
            .collect();
        assert!(grads.is_empty(), "a gradient outside the module");
        values
    }

    /// A small Bernoulli VAE (12 inputs, 3 latents), 40 rows of binary data, and a minibatch of 14 of
    /// them in a scrambled order: the fixture of the sharding tests.
    pub(crate) fn small_vae_batch(device: &Device) -> (Vae, VaeData, Vec<usize>) {
        let config: VaeConfig = toml::from_str(
            "[encoder]\nsizes = [12, 16, 3]\n[decoder]\nsizes = [3, 16, 12]\n\
             [likelihood]\nkind = \"bernoulli\"\n",
        )
        .expect("config");
        let model = Vae::new(&config, 3, device);
        let values = (0..40 * 12)
            .map(|i| ((i * 7919) % 3 == 0) as u8 as f64)
            .collect();
        let data = VaeData::new(&Matrix::new(40, 12, values), Binarization::None);
        let rows: Vec<usize> = (0..40).rev().step_by(3).collect();
        (model, data, rows)
    }

    /// The ELBO with `samples` samples, KL weight 0.7 and the analytic KL: the sharding tests' objective.
    pub(crate) fn test_spec(samples: usize) -> ObjectiveSpec {
        ObjectiveSpec {
            kind: ObjectiveKind::Elbo,
            samples,
            beta: 0.7,
            free_bits: 0.0,
            kl: KlEstimator::Analytic,
        }
    }

    /// Sample-major noise `[samples * rows, 3]` for `part`'s rows (row `s * len + i` is sample `s` of
    /// row `part[i]`), each row's (and sample's) the same whichever shard holds it.
    pub(crate) fn row_noise(
        part: &[usize],
        samples: usize,
        stream: &[u8],
        device: &Device,
    ) -> Tensor<2> {
        let mut blocks = Vec::with_capacity(samples * part.len());
        for s in 0..samples {
            for &r in part {
                let index = (s * 1000 + r) as u64;
                blocks.push(normal_noise(1, 3, 11, stream, index, device));
            }
        }
        Tensor::cat(blocks, 0)
    }

    #[test]
    fn split_is_contiguous_and_even() {
        let rows: Vec<usize> = (0..7).collect();
        let parts = split_evenly(&rows, 3);
        assert_eq!(parts, vec![&rows[0..3], &rows[3..5], &rows[5..7]]);
    }

    /// Three shards' summed gradients and averaged metrics equal the whole minibatch's, for the same
    /// noise: the sharding changes where the arithmetic runs, not what it computes.
    #[test]
    fn shards_sum_to_the_whole_batch_gradient() {
        shards_sum_to_the_whole_batch_gradient_of(false);
    }

    /// The same for the encoder-only steps' frozen copy ([`AmortizedModel::guide_only`]): the shards'
    /// replicas keep the decoder and prior frozen, so only the encoder's parameters get gradients.
    #[test]
    fn sharded_guide_only_steps_differentiate_the_encoder_alone() {
        shards_sum_to_the_whole_batch_gradient_of(true);
    }

    fn shards_sum_to_the_whole_batch_gradient_of(guide_only: bool) {
        let device = Device::flex().autodiff();
        let (model, data, rows) = small_vae_batch(&device);
        let model = if guide_only {
            model.guide_only()
        } else {
            model
        };
        let spec = test_spec(1);
        let step = ShardedStep {
            model: &model,
            data: &data,
            epoch: 0,
            device: &device,
            spec: &spec,
            detach_guide: false,
        };
        // The noise of a row is the same whichever shard holds it.
        let parts = split_evenly(&rows, 3);
        let sharded_noise =
            |shard: usize, _len: usize| row_noise(parts[shard], 1, b"test", &device);
        let whole_noise = |_shard: usize, _len: usize| row_noise(&rows, 1, b"test", &device);
        let (m3, g3) = step.gradients(&rows, 3, &sharded_noise);
        let (m1, g1) = step.gradients(&rows, 1, &whole_noise);
        for (a, b) in [(m3.0, m1.0), (m3.1, m1.1), (m3.2, m1.2), (m3.3, m1.3)] {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "metric {a} vs {b}");
        }
        let (g3, g1) = if guide_only {
            (flat(&model.encoder, g3), flat(&model.encoder, g1))
        } else {
            (flat(&model, g3), flat(&model, g1))
        };
        assert_eq!(g3.len(), g1.len());
        for (p3, p1) in g3.iter().zip(&g1) {
            for (a, b) in p3.iter().zip(p1) {
                assert!(
                    (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "gradient {a} vs {b}"
                );
            }
        }
    }
}

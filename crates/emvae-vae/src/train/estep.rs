//! The optimisation step of each E-step strategy: amortized (with He et al. 2019's aggressive inner
//! loop), non-amortized, semi-amortized (Kim et al. 2018) and Monte Carlo EM, each in `train.shards`
//! data-parallel shards ([`crate::shard`]); an unsharded step draws its noise as before shards existed,
//! so such runs continue bit for bit.

use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use emvae_core::rng::{derive_seed, rng_for};
use emvae_core::tensor::tensor_to_vec;
use rand::Rng as _;

use super::AmortizedTrainer;
use crate::amortized::{AmortizedModel, ModelConfig, TrainData};
use crate::config::{ObjectiveKind, Proposal, Strategy};
use crate::error::VaeError;
use crate::guide::Posterior;
use crate::inference::sample_prior;
use crate::objective::{ObjectiveSpec, batch_terms};
use crate::refine::{Refinement, Rule, optimise_posteriors};
use crate::shard::{
    Shard, ShardedStep, StepMetrics, map_shards, mean_of, metrics_of, sum_gradients, sum_metrics,
};

/// What one shard of a two-part step returns: its weighted metrics, the gradients of the decoder
/// (and prior) and those of the guide.
type TwoPartGradients = (StepMetrics, GradientsParams, GradientsParams);

/// The draws from Monte Carlo EM's proposal `r(z)` for one shard (one value per shard and step, so
/// its size does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum ProposalDraws {
    /// Standard-normal noise `[K * rows, latent]`, reparameterising the encoder's posterior.
    Encoder(Tensor<2>),
    /// The seed of `K * rows` draws from the prior.
    Prior(u64),
}

impl<M: AmortizedModel> AmortizedTrainer<M> {
    /// One optimisation step on `rows`.
    pub(super) fn step(&mut self, rows: &[usize], lr: f64) -> Result<StepMetrics, VaeError> {
        let spec = self.spec();
        let step = self.state.step;
        let strategy =
            if self.config.estep().strategy == Strategy::Aggressive && !self.state.aggressive {
                Strategy::Amortized
            } else {
                self.config.estep().strategy
            };
        match strategy {
            Strategy::Amortized | Strategy::Aggressive => {
                let aggressive = strategy == Strategy::Aggressive;
                if aggressive {
                    self.aggressive_encoder_updates(lr, &spec)?;
                }
                // After the aggressive inner loop, one decoder step with the (fixed) encoder's posterior.
                let noise = ("noise", step);
                let (metrics, grads) =
                    self.sharded_gradients(&self.model, rows, &spec, aggressive, noise);
                // A non-finite loss is reported by the loop with the term that went first.
                if metrics.0.is_finite() {
                    self.apply(grads, lr)?;
                }
                Ok(metrics)
            }
            Strategy::NonAmortized => self.non_amortized_step(rows, lr, &spec),
            Strategy::SemiAmortized => self.semi_amortized_step(rows, lr, &spec),
            Strategy::MonteCarloEm => self.monte_carlo_em_step(rows, lr, &spec),
        }
    }

    /// The name under which shard `shard` draws from `stream`: `stream` itself for an unsharded step
    /// (as before shards existed), `{stream}-shard-{shard}` otherwise.
    fn shard_stream(&self, stream: &str, shard: usize) -> String {
        if self.shards == 1 {
            stream.to_string()
        } else {
            format!("{stream}-shard-{shard}")
        }
    }

    /// Shard `shard`'s standard-normal noise `[rows, latent]` from `stream` at `index`.
    fn shard_noise(&self, rows: usize, stream: &str, shard: usize, index: u64) -> Tensor<2> {
        self.noise(rows, self.shard_stream(stream, shard).as_bytes(), index)
    }

    /// The objective's metrics and the gradients of `model`'s trainable parameters on the minibatch
    /// `rows`, in `train.shards` data-parallel shards, noise from `stream` at `index`.
    fn sharded_gradients(
        &self,
        model: &M,
        rows: &[usize],
        spec: &ObjectiveSpec,
        detach_guide: bool,
        (stream, index): (&str, u64),
    ) -> (StepMetrics, GradientsParams) {
        let noise =
            |shard: usize, len: usize| self.shard_noise(spec.samples * len, stream, shard, index);
        let sharded = ShardedStep {
            model,
            data: &self.train,
            epoch: self.state.epoch,
            device: &self.device,
            spec,
            detach_guide,
        };
        sharded.gradients(rows, self.shards, &noise)
    }

    /// He et al. 2019's inner loop: encoder-only steps on fresh random minibatches until the mean loss
    /// of the last `inner_window` steps is no better than the window before (or `inner_max_steps`),
    /// each through [`AmortizedModel::guide_only`] in `train.shards` shards, like the ordinary step.
    fn aggressive_encoder_updates(
        &mut self,
        lr: f64,
        spec: &ObjectiveSpec,
    ) -> Result<(), VaeError> {
        let e = self.config.estep().clone();
        let b = self.config.train().batch_size.min(self.train.len());
        let step = self.state.step;
        let mut rng = rng_for(self.seed, b"aggressive-batches", step);
        let (mut window, mut previous) = (0.0, f64::INFINITY);
        for i in 0..e.inner_max_steps {
            let rows: Vec<usize> = (0..b)
                .map(|_| rng.random_range(0..self.train.len()))
                .collect();
            let guide = self.model.guide_only();
            let noise = ("aggressive-noise", derive_seed(step, b"inner", i as u64));
            let ((loss, ..), grads) = self.sharded_gradients(&guide, &rows, spec, false, noise);
            if !loss.is_finite() {
                // The decoder step that follows meets it too, and the loop names the term.
                break;
            }
            window += loss;
            self.apply(grads, lr)?;
            if (i + 1) % e.inner_window == 0 {
                if window >= previous {
                    break;
                }
                previous = window;
                window = 0.0;
            }
        }
        Ok(())
    }

    /// Non-amortized (per-point) variational EM in `train.shards` shards: see
    /// [`non_amortized_gradients`]; the model takes a step of the optimiser, the rows' posteriors one of
    /// their own Adam with step size `estep.posterior_lr`.
    fn non_amortized_step(
        &mut self,
        rows: &[usize],
        lr: f64,
        spec: &ObjectiveSpec,
    ) -> Result<StepMetrics, VaeError> {
        let step = self.state.step;
        let local = self
            .local
            .as_ref()
            .expect("non-amortized runs hold local posteriors");
        let shards = self.batched_shards(rows, &|s, x| {
            let init = local.gather(s.rows, &self.device);
            let eps = self.shard_noise(spec.samples * s.rows.len(), "noise", s.index, step);
            (
                s.rows.to_vec(),
                non_amortized_gradients(s, x, init, eps, spec),
            )
        });
        let mut metrics = Vec::with_capacity(shards.len());
        let mut model_grads = Vec::with_capacity(shards.len());
        let mut posterior_grads = Vec::with_capacity(shards.len());
        for (part, (m, g, posterior)) in shards {
            metrics.push(m);
            model_grads.push(g);
            posterior_grads.push((part, posterior));
        }
        let metrics = sum_metrics(metrics);
        if !metrics.0.is_finite() {
            return Ok(metrics);
        }
        self.apply(sum_gradients(&self.model, model_grads), lr)?;
        let post_lr = self.config.estep().posterior_lr;
        if let Some(local) = self.local.as_mut() {
            for (part, (gm, gl)) in posterior_grads {
                if !gm.is_empty() {
                    local.update(&part, &gm, &gl, post_lr);
                }
            }
        }
        Ok(metrics)
    }

    /// `work` on each shard of `rows` ([`map_shards`]) with the shard's batch.
    fn batched_shards<R: Send>(
        &self,
        rows: &[usize],
        work: &(dyn Fn(&Shard<'_, M>, &M::Batch) -> R + Sync),
    ) -> Vec<R> {
        map_shards(&self.model, rows, self.shards, &|s: Shard<'_, M>| {
            let x = self.train.batch(s.rows, self.state.epoch, &self.device);
            work(&s, &x)
        })
    }

    /// Applies a two-part step's shards: the decoder's summed gradients, then the guide's.
    fn apply_two_part(
        &mut self,
        shards: Vec<TwoPartGradients>,
        lr: f64,
    ) -> Result<StepMetrics, VaeError> {
        let mut metrics = Vec::with_capacity(shards.len());
        let (mut decoder, mut guide) = (Vec::new(), Vec::new());
        for (m, d, g) in shards {
            metrics.push(m);
            decoder.push(d);
            guide.push(g);
        }
        let metrics = sum_metrics(metrics);
        // A non-finite loss is reported by the loop with the term that went first.
        if metrics.0.is_finite() {
            self.apply(sum_gradients(&self.model, decoder), lr)?;
            self.apply(sum_gradients(&self.model, guide), lr)?;
        }
        Ok(metrics)
    }

    /// Kim et al. 2018 in `train.shards` shards: see [`semi_amortized_gradients`].
    fn semi_amortized_step(
        &mut self,
        rows: &[usize],
        lr: f64,
        spec: &ObjectiveSpec,
    ) -> Result<StepMetrics, VaeError> {
        let step = self.state.step;
        let e = self.config.estep();
        let (refine_steps, refine_lr) = (e.refine_steps, e.refine_lr);
        let shards = self.batched_shards(rows, &|s, x| {
            let n = spec.samples * s.rows.len();
            let refinement = Refinement {
                steps: refine_steps,
                rule: Rule::Sgd { lr: refine_lr },
                samples: spec.samples,
                seed: derive_seed(
                    self.seed,
                    self.shard_stream("refine", s.index).as_bytes(),
                    step,
                ),
                stream: b"refine",
            };
            let eps = self.shard_noise(n, "noise", s.index, step);
            let eps_guide = self.shard_noise(n, "noise-encoder", s.index, step);
            semi_amortized_gradients(s, x, spec, refinement, (eps, eps_guide))
        });
        self.apply_two_part(shards, lr)
    }

    /// Monte Carlo EM in `train.shards` shards: see [`monte_carlo_em_gradients`].
    fn monte_carlo_em_step(
        &mut self,
        rows: &[usize],
        lr: f64,
        spec: &ObjectiveSpec,
    ) -> Result<StepMetrics, VaeError> {
        let step = self.state.step;
        let (k, proposal) = (self.config.estep().mc_samples, self.config.estep().proposal);
        let shards = self.batched_shards(rows, &|s, x| {
            let b = s.rows.len();
            let draws = match proposal {
                Proposal::Encoder => {
                    ProposalDraws::Encoder(self.shard_noise(k * b, "mcem", s.index, step))
                }
                Proposal::Prior => ProposalDraws::Prior(derive_seed(
                    self.seed,
                    self.shard_stream("mcem-prior", s.index).as_bytes(),
                    step,
                )),
            };
            let eps_guide = self.shard_noise(spec.samples * b, "noise-encoder", s.index, step);
            monte_carlo_em_gradients(s, x, spec, k, draws, eps_guide)
        });
        self.apply_two_part(shards, lr)
    }
}

/// Non-amortized variational EM on one shard (weight `w`): the gradients of `w · (−ELBO)` with
/// respect to the model's parameters, and to the rows' own posteriors `init` (free variational
/// parameters, flattened row-major: mean, then log-variance), which are the whole batch's for those
/// rows. Noise `eps` `[samples · rows, latent]`.
pub(crate) fn non_amortized_gradients<M: AmortizedModel>(
    s: &Shard<'_, M>,
    x: &M::Batch,
    init: Posterior,
    eps: Tensor<2>,
    spec: &ObjectiveSpec,
) -> (StepMetrics, GradientsParams, (Vec<f64>, Vec<f64>)) {
    let mean = init.mean.require_grad();
    let log_var = init.log_var.require_grad();
    let q = Posterior {
        mean: mean.clone(),
        log_var: log_var.clone(),
    };
    let terms = batch_terms(s.model, &q, x, eps, spec);
    let metrics = s.weigh_metrics(metrics_of(&terms));
    let grads = s.weigh(terms.loss).backward();
    let gm = mean.grad(&grads).map(tensor_to_vec).unwrap_or_default();
    let gl = log_var.grad(&grads).map(tensor_to_vec).unwrap_or_default();
    (
        metrics,
        GradientsParams::from_grads(grads, s.model),
        (gm, gl),
    )
}

/// Kim et al. 2018's semi-amortized step on one shard (weight `w`): the posteriors the encoder gives
/// are refined by `refinement`'s gradient steps on each row's ELBO (the model held fixed), the decoder
/// and prior take the gradient of `w · (−ELBO)` at the refined posteriors, and the encoder that of
/// `w · (−ELBO)` at its own output (through the decoder to z, the decoder's weights frozen).
/// Noise: `eps` for the decoder's term, `eps_guide` for the encoder's, `[samples · rows, latent]` each.
pub(crate) fn semi_amortized_gradients<M: AmortizedModel>(
    s: &Shard<'_, M>,
    x: &M::Batch,
    spec: &ObjectiveSpec,
    refinement: Refinement,
    (eps, eps_guide): (Tensor<2>, Tensor<2>),
) -> TwoPartGradients {
    let q0 = s.model.posterior(x);
    let refined = optimise_posteriors(s.model, x, q0.clone().detach(), refinement);
    let terms = batch_terms(s.model, &refined, x, eps, spec);
    let metrics = s.weigh_metrics(metrics_of(&terms));
    let decoder = GradientsParams::from_grads(s.weigh(terms.loss).backward(), s.model);
    let guide = s.model.guide_only();
    let guide_terms = batch_terms(&guide, &q0, x, eps_guide, spec);
    let guide_grads = guide.guide_gradients(s.weigh(guide_terms.loss).backward());
    (metrics, decoder, guide_grads)
}

/// Monte Carlo EM on one shard (weight `w`): self-normalised importance weights
/// `w_k ∝ p(x, z_k) / r(z_k)` over `K` draws from the proposal `r` (the encoder's posterior, or the
/// prior) form the E-step; the decoder and prior take the gradient of `−w · Σ_k w_k log p(x, z_k)`
/// (the M-step). The encoder is trained on its own ELBO (the decoder's weights frozen) either way: as
/// the proposal it improves the E-step, and it gives posteriors for evaluation and encoding. Metrics:
/// the loss, the importance-sampled bound `log (1/K) Σ_k p(x, z_k) / r(z_k)`, the mean
/// `log p(x | z_k)` and the encoder's KL.
pub(crate) fn monte_carlo_em_gradients<M: AmortizedModel>(
    s: &Shard<'_, M>,
    x: &M::Batch,
    spec: &ObjectiveSpec,
    k: usize,
    draws: ProposalDraws,
    eps_guide: Tensor<2>,
) -> TwoPartGradients {
    let model = s.model;
    let q = model.posterior(x);
    let b = q.mean.dims()[0];
    let (z, log_r) = match draws {
        ProposalDraws::Encoder(eps) => {
            let fixed = q.clone().detach();
            (
                fixed.sample(eps.clone(), k),
                fixed.log_prob_of_noise(eps, k),
            )
        }
        ProposalDraws::Prior(seed) => {
            let z = sample_prior(model.prior(), k * b, seed, &q.mean.device());
            let log_r = model.prior().log_prob(z.clone()).detach();
            (z, log_r)
        }
    };
    let log_lik = model.log_likelihood(x, z.clone(), k);
    let log_joint = log_lik.clone() + model.prior().log_prob(z);
    let log_w = (log_joint.clone().detach() - log_r).reshape([k, b]);
    let weights = burn::tensor::activation::softmax(log_w.clone(), 0);
    let loss = (weights * log_joint.reshape([k, b]))
        .sum_dim(0)
        .mean()
        .neg();
    let bound = emvae_core::tensor::log_sum_exp(log_w, 0).sub_scalar((k as f64).ln());
    let rec = log_lik.reshape([k, b]).mean_dim(0);
    let loss_value = mean_of(&loss);
    let bound_value = tensor_to_vec(bound.mean())[0];
    let rec_value = tensor_to_vec(rec.mean())[0];
    let decoder = GradientsParams::from_grads(s.weigh(loss).backward(), model);
    let elbo = ObjectiveSpec {
        kind: ObjectiveKind::Elbo,
        ..*spec
    };
    let guide = model.guide_only();
    let terms = batch_terms(&guide, &q, x, eps_guide, &elbo);
    let kl = mean_of(&terms.kl);
    let guide_grads = guide.guide_gradients(s.weigh(terms.loss).backward());
    let metrics = s.weigh_metrics((loss_value, bound_value, rec_value, kl));
    (metrics, decoder, guide_grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::tests::{row_noise, small_vae_batch, test_spec};
    use crate::train::gradient_values;
    use crate::vae::Vae;
    use burn::tensor::Device;

    #[derive(Clone, Copy, Debug)]
    enum Case {
        SemiAmortized,
        MonteCarloEm,
    }

    /// A two-part step's metrics, and its decoder and guide gradients as `(decoder part, encoder part)`
    /// of each (`None` where a parameter got none), from `rows` in `shards` shards. The noise of a row
    /// (and of each of its samples) is the same whichever shard holds it.
    #[allow(clippy::type_complexity)]
    fn two_part_step(case: Case, shards: usize) -> (StepMetrics, [Vec<Option<Vec<f64>>>; 4]) {
        let device = Device::flex().autodiff();
        let (model, data, rows) = small_vae_batch(&device);
        let spec = test_spec(2);
        let k = 4;
        let noise = |part: &[usize], samples: usize, stream: &[u8]| {
            row_noise(part, samples, stream, &device)
        };
        let results = map_shards(&model, &rows, shards, &|s: Shard<'_, Vae>| {
            let x = data.batch(s.rows, 0, &device);
            let eps_guide = noise(s.rows, spec.samples, b"guide");
            match case {
                // No refinement steps: their noise is drawn per shard, not per row.
                Case::SemiAmortized => {
                    let refinement = Refinement {
                        steps: 0,
                        rule: Rule::Sgd { lr: 1.0 },
                        samples: spec.samples,
                        seed: 5,
                        stream: b"refine",
                    };
                    let eps = noise(s.rows, spec.samples, b"decoder");
                    semi_amortized_gradients(&s, &x, &spec, refinement, (eps, eps_guide))
                }
                Case::MonteCarloEm => {
                    let draws = ProposalDraws::Encoder(noise(s.rows, k, b"proposal"));
                    monte_carlo_em_gradients(&s, &x, &spec, k, draws, eps_guide)
                }
            }
        });
        let (mut metrics, mut decoder, mut guide) = (Vec::new(), Vec::new(), Vec::new());
        for (m, d, g) in results {
            metrics.push(m);
            decoder.push(d);
            guide.push(g);
        }
        let mut decoder = sum_gradients(&model, decoder);
        let mut guide = sum_gradients(&model, guide);
        let parts = [
            gradient_values(&model.decoder, &mut decoder),
            gradient_values(&model.encoder, &mut decoder),
            gradient_values(&model.decoder, &mut guide),
            gradient_values(&model.encoder, &mut guide),
        ];
        assert!(
            decoder.is_empty() && guide.is_empty(),
            "a gradient outside the model"
        );
        (sum_metrics(metrics), parts)
    }

    /// The semi-amortized and Monte Carlo EM steps in three shards give the metrics and the two
    /// gradient sets (the decoder's, the guide's) of the whole minibatch, and each set only its part.
    #[test]
    fn sharded_two_part_steps_equal_the_whole_batch() {
        for case in [Case::SemiAmortized, Case::MonteCarloEm] {
            let (m3, g3) = two_part_step(case, 3);
            let (m1, g1) = two_part_step(case, 1);
            for (a, b) in [(m3.0, m1.0), (m3.1, m1.1), (m3.2, m1.2), (m3.3, m1.3)] {
                assert!(
                    (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "{case:?}: metric {a} vs {b}"
                );
            }
            // The decoder set holds the decoder alone, the guide set the encoder alone.
            for (i, (p3, p1)) in g3.iter().zip(&g1).enumerate() {
                let trained = i == 0 || i == 3;
                assert_eq!(p3.len(), p1.len());
                for (a, b) in p3.iter().zip(p1) {
                    assert_eq!(a.is_some(), trained, "{case:?}: part {i}");
                    assert_eq!(b.is_some(), trained, "{case:?}: part {i}");
                    let (Some(a), Some(b)) = (a, b) else { continue };
                    for (a, b) in a.iter().zip(b) {
                        assert!(
                            (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                            "{case:?}: gradient {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// The non-amortized step in three shards gives the whole minibatch's metrics, model gradients
    /// (the decoder's alone: the encoder is unused) and each row's posterior gradients.
    #[test]
    fn sharded_non_amortized_step_equals_the_whole_batch() {
        let device = Device::flex().autodiff();
        let (model, data, rows) = small_vae_batch(&device);
        let spec = test_spec(2);
        let mut local = super::super::LocalPosteriors::new(40, 3);
        for (i, (m, v)) in local.mean.iter_mut().zip(&mut local.log_var).enumerate() {
            *m = ((i * 37) % 11) as f32 / 5.0 - 1.0;
            *v = ((i * 13) % 7) as f32 / 7.0 - 0.5;
        }
        let run = |shards: usize| {
            let results = map_shards(&model, &rows, shards, &|s: Shard<'_, Vae>| {
                let x = data.batch(s.rows, 0, &device);
                let eps = row_noise(s.rows, spec.samples, b"test", &device);
                let init = local.gather(s.rows, &device);
                let result = non_amortized_gradients(&s, &x, init, eps, &spec);
                (s.rows.to_vec(), result)
            });
            let (mut metrics, mut grads, mut per_row) = (Vec::new(), Vec::new(), Vec::new());
            for (part, (m, g, (gm, gl))) in results {
                metrics.push(m);
                grads.push(g);
                for (i, &r) in part.iter().enumerate() {
                    per_row.push((
                        r,
                        gm[i * 3..i * 3 + 3].to_vec(),
                        gl[i * 3..i * 3 + 3].to_vec(),
                    ));
                }
            }
            let mut grads = sum_gradients(&model, grads);
            let decoder = gradient_values(&model.decoder, &mut grads);
            let encoder = gradient_values(&model.encoder, &mut grads);
            assert!(grads.is_empty(), "a gradient outside the model");
            assert!(
                encoder.iter().all(Option::is_none),
                "the unused encoder got a gradient"
            );
            per_row.sort_by_key(|(r, ..)| *r);
            (sum_metrics(metrics), decoder, per_row)
        };
        let (m3, d3, p3) = run(3);
        let (m1, d1, p1) = run(1);
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() < tol * (1.0 + b.abs());
        for (a, b) in [(m3.0, m1.0), (m3.1, m1.1), (m3.2, m1.2), (m3.3, m1.3)] {
            assert!(close(a, b, 1e-4), "metric {a} vs {b}");
        }
        for (a, b) in d3.iter().zip(&d1) {
            let (Some(a), Some(b)) = (a, b) else {
                panic!("a decoder parameter without a gradient");
            };
            assert!(
                a.iter().zip(b).all(|(a, b)| close(*a, *b, 1e-5)),
                "decoder gradient"
            );
        }
        assert_eq!(p3.len(), rows.len());
        for ((r3, m3, v3), (r1, m1, v1)) in p3.iter().zip(&p1) {
            assert_eq!(r3, r1);
            for (a, b) in m3.iter().chain(v3).zip(m1.iter().chain(v1)) {
                assert!(
                    close(*a, *b, 1e-5),
                    "row {r3}: posterior gradient {a} vs {b}"
                );
                assert!(*b != 0.0, "row {r3}: no posterior gradient");
            }
        }
    }
}

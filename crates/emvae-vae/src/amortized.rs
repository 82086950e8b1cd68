//! What the amortized machinery needs of a model: the interfaces every model/guide pair implements so
//! that one trainer, one objective set and one set of diagnostics serve them all (as Pyro's model/guide
//! split, or jxhe/vae-lagging-encoder's `VAE(encoder, decoder)` that knows no architecture).
//!
//! A model holds p(z) (a [`Prior`]), p(x | z) (its decoder) and the guide q(z | x) (its encoder), over
//! batches of its own type: dense rows for the MLP VAE, padded token ids for a sentence VAE. Its data
//! set hands out those batches.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor};
use emvae_core::config::InvalidParam;
use rand::seq::SliceRandom;

use crate::config::{EStepConfig, EvalConfig, ObjectiveConfig, TrainConfig};
use crate::error::VaeError;
use crate::guide::Posterior;
use crate::model::Prior;

/// The settings of a model: its architecture, and the training settings every amortized model shares.
pub trait ModelConfig: Clone + std::fmt::Debug + Send + Sync {
    fn objective(&self) -> &ObjectiveConfig;
    fn estep(&self) -> &EStepConfig;
    fn train(&self) -> &TrainConfig;
    fn eval(&self) -> &EvalConfig;
    /// Dimension of z.
    fn latent_dim(&self) -> usize;
    /// Whether p(z) is a mixture (no analytic KL).
    fn mixture_prior(&self) -> bool;
    /// What the parameters' shapes depend on, as text (checkpoints of another architecture are refused).
    fn architecture(&self) -> String;
    /// Validates the settings; keys relative to the model's table.
    fn check(&self) -> Result<(), InvalidParam>;
}

/// A data set of a model: rows that form batches of the model's batch type.
pub trait TrainData: Clone + Sync {
    type Batch: Clone;
    /// Number of rows (data points).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The batch of `rows` for epoch `epoch` (which may redraw a stochastic binarisation).
    fn batch(&self, rows: &[usize], epoch: u64, device: &Device) -> Self::Batch;
    /// Epoch `epoch`'s minibatches: by default a permutation drawn from `seed` and the epoch, cut into
    /// `batch_size` rows (the last one shorter).
    fn epoch_batches(&self, batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut emvae_core::rng::rng_for(seed, b"epoch-order", epoch));
        order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
    /// The data as evaluated: stochastic parts (binarisation) drawn once.
    fn for_evaluation(&self) -> Self;
    /// What a checkpoint records of the data to refuse resuming on others: `(rows, width)`.
    fn shape(&self) -> (usize, usize);
    /// Units of throughput in `rows` (examples, or tokens for text).
    fn units(&self, rows: &[usize]) -> usize {
        rows.len()
    }
    /// Values one row's likelihood evaluation holds (to size evaluation chunks).
    fn row_cost(&self) -> usize;
}

/// A latent-variable model with its guide, trained by amortized variational EM.
pub trait AmortizedModel: Module + Sync + 'static {
    type Config: ModelConfig;
    type Batch: Clone;
    type Data: TrainData<Batch = Self::Batch>;

    /// A freshly initialised model; its weights depend only on `seed`.
    fn init(config: &Self::Config, seed: u64, device: &Device) -> Self;
    /// Checks that `data` suit the model (keys relative to the model's table).
    fn check_data(_config: &Self::Config, _data: &Self::Data) -> Result<(), VaeError> {
        Ok(())
    }
    /// The guide: q(z | x) per row of `x`.
    fn posterior(&self, x: &Self::Batch) -> Posterior;
    /// `log p(x | z)` per row `[samples * batch]` for latent codes `z` `[samples * batch, latent]`,
    /// sample-major (row `s * batch + i` belongs to data row `i`).
    fn log_likelihood(&self, x: &Self::Batch, z: Tensor<2>, samples: usize) -> Tensor<1>;
    /// [`Self::log_likelihood`] with the guide's own training loss per row `[batch]`, for a model whose
    /// guide has a part the bound does not train (the classifier q(y | x) of a partly observed discrete
    /// latent). The default has none.
    fn log_likelihood_and_guide_loss(
        &self,
        x: &Self::Batch,
        z: Tensor<2>,
        samples: usize,
    ) -> (Tensor<1>, Option<Tensor<1>>) {
        (self.log_likelihood(x, z, samples), None)
    }
    /// The prior p(z).
    fn prior(&self) -> &Prior;
    /// The last step of training, once the bound's optimisation has ended (the final epoch or an early
    /// stop), before the last checkpoint and the model file are written: where a guide has a part
    /// fitted apart from the bound (a classifier refitted to the model's posterior), it is fitted here.
    /// The default does nothing.
    fn finish_training(&mut self, _data: &Self::Data, _seed: u64) -> Result<(), VaeError> {
        Ok(())
    }
    /// Gradients of the guide's parameters only (from a backward pass through the whole model).
    fn guide_gradients(&self, grads: Gradients) -> GradientsParams;
    /// The model with every parameter outside the guide frozen (`no_grad`), for the encoder-only
    /// steps (aggressive and semi-amortized training, Monte Carlo EM's proposal): a backward pass
    /// through it still carries the gradient through the decoder to z but computes no weight
    /// gradients for the decoder or the prior, which those steps would discard. Parameter ids are
    /// kept, so [`Self::guide_gradients`] of its backward pass apply to `self`.
    fn guide_only(&self) -> Self;
}

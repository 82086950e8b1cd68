//! The checkpoint of an amortized run: format, writing, checks on reading, and the model's parameters
//! as burnpack bytes.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};
use emvae_core::hash::fnv1a64;
use emvae_core::tensor::tensor_to_vec;
use serde::{Deserialize, Serialize};

use super::{AmortizedTrainer, LocalPosteriors, TrainState};
use crate::adam::Adam;
use crate::amortized::{AmortizedModel, ModelConfig, TrainData};
use crate::config::Strategy;
use crate::error::VaeError;

/// Format tag of checkpoints.
pub const CHECKPOINT_FORMAT: &str = "emvae.vae.checkpoint.v2";
/// The format before the fused optimiser (burn's Adam record), which this version cannot continue.
const CHECKPOINT_FORMAT_V1: &str = "emvae.vae.checkpoint.v1";
const MAGIC: &[u8; 8] = b"EMVAECK2";
/// Checkpoints of the first format (burn's optimiser record, no checksum).
const MAGIC_V1: &[u8; 8] = b"EMVAECK1";

/// State of a checkpoint beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    format: String,
    model_fingerprint: String,
    data_rows: usize,
    data_dim: usize,
    seed: u64,
    state: TrainState,
    local: Option<LocalPosteriors>,
}

/// A fingerprint of the model's architecture (what its parameters' shapes depend on).
pub fn model_fingerprint<C: ModelConfig>(config: &C) -> String {
    format!("{:016x}", fnv1a64(config.architecture().as_bytes()))
}

impl<M: AmortizedModel> AmortizedTrainer<M> {
    /// Continues a run from checkpoint bytes written by [`Self::checkpoint_bytes`].
    pub fn resume(
        config: M::Config,
        seed: u64,
        device: Device,
        train: M::Data,
        test: Option<M::Data>,
        bytes: &[u8],
    ) -> Result<Self, VaeError> {
        let mut trainer = Self::new(config, seed, device, train, test)?;
        let parts = split_checkpoint(bytes)?;
        let meta: CheckpointMeta = serde_json::from_slice(parts[0])
            .map_err(|e| VaeError::Checkpoint(format!("damaged checkpoint state: {e}")))?;
        if meta.format == CHECKPOINT_FORMAT_V1 {
            return Err(VaeError::Checkpoint(
                "it was written by an earlier emvae whose optimiser state this version cannot read: \
                 start the run again (--force), or finish it with the emvae that began it"
                    .into(),
            ));
        }
        if meta.format != CHECKPOINT_FORMAT {
            return Err(VaeError::Checkpoint(format!(
                "format `{}` is not a VAE checkpoint (`{CHECKPOINT_FORMAT}`)",
                meta.format
            )));
        }
        if meta.model_fingerprint != model_fingerprint(&trainer.config) {
            return Err(VaeError::Checkpoint(
                "it was written by a different model (encoder, decoder, likelihood or prior differ)".into(),
            ));
        }
        let (rows, width) = trainer.train.shape();
        if (meta.data_rows, meta.data_dim) != (rows, width) || meta.seed != seed {
            return Err(VaeError::Checkpoint(format!(
                "it was written for other data or seed ({} x {} rows, seed {}; now {rows} x {width}, seed {seed})",
                meta.data_rows, meta.data_dim, meta.seed
            )));
        }
        check_state(&trainer, &meta.state, meta.local.as_ref())?;
        trainer.model = load_model(trainer.model, parts[1])?;
        trainer.optim = Adam::from_bytes(trainer.config.train(), parts[2], &trainer.model)
            .map_err(|e| VaeError::Checkpoint(format!("optimiser state: {e}")))?;
        trainer.state = meta.state;
        trainer.local = meta.local;
        Ok(trainer)
    }

    /// Everything needed to resume, as one blob (written atomically by the caller).
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>, VaeError> {
        let (data_rows, data_dim) = self.train.shape();
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT.into(),
            model_fingerprint: model_fingerprint(&self.config),
            data_rows,
            data_dim,
            seed: self.seed,
            state: self.state.clone(),
            local: self.local.clone(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| VaeError::Checkpoint(e.to_string()))?;
        let model = self.model_bytes()?;
        let optim = self.optim.to_bytes();
        let mut out = MAGIC.to_vec();
        for part in [&meta[..], &model[..], &optim[..]] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// The model's parameters as burnpack bytes.
    pub fn model_bytes(&self) -> Result<Vec<u8>, VaeError> {
        model_bytes(self.model.clone())
    }
}

/// Checks that the loop can continue from a checkpoint's `state` and `local` posteriors: a minibatch
/// within the epoch, and local posteriors of every training row exactly when the run is non-amortized.
fn check_state<M: AmortizedModel>(
    trainer: &AmortizedTrainer<M>,
    state: &TrainState,
    local: Option<&LocalPosteriors>,
) -> Result<(), VaeError> {
    let bad = |m: String| {
        Err(VaeError::Checkpoint(format!(
            "damaged checkpoint state: {m}"
        )))
    };
    let per_epoch = trainer.steps_per_epoch();
    if state.batch_in_epoch >= per_epoch {
        return bad(format!(
            "it is at minibatch {} of an epoch of {per_epoch}",
            state.batch_in_epoch
        ));
    }
    let (rows, latent) = (trainer.train.len(), trainer.config.latent_dim());
    match (
        trainer.config.estep().strategy == Strategy::NonAmortized,
        local,
    ) {
        (true, None) => bad("a non-amortized run's checkpoint without its local posteriors".into()),
        (false, Some(_)) => bad("local posteriors in the checkpoint of an amortized run".into()),
        (true, Some(l)) if !l.fits(rows, latent) => bad(format!(
            "local posteriors of {} rows in {} dimensions do not fit {rows} rows in {latent}",
            l.rows(),
            l.latent
        )),
        _ => Ok(()),
    }
}

/// The three parts (state, model, optimiser) of a checkpoint, after checking its magic number, its
/// layout and its checksum.
fn split_checkpoint(bytes: &[u8]) -> Result<Vec<&[u8]>, VaeError> {
    if bytes.starts_with(MAGIC_V1) {
        return Err(VaeError::Checkpoint(
            "it was written by an earlier emvae whose optimiser state this version cannot read: \
             start the run again (--force), or finish it with the emvae that began it"
                .into(),
        ));
    }
    let bad = |what: &str| VaeError::Checkpoint(format!("not a readable emvae checkpoint: {what}"));
    if !bytes.starts_with(&MAGIC[..]) {
        return Err(bad(
            "bad magic number (not a checkpoint, or another program's file)",
        ));
    }
    let Some(body_len) = bytes.len().checked_sub(8) else {
        return Err(bad("truncated"));
    };
    let (body, sum) = bytes.split_at(body_len);
    let mut rest = &body[MAGIC.len().min(body.len())..];
    let mut parts = Vec::new();
    for _ in 0..3 {
        if rest.len() < 8 {
            return Err(bad("truncated"));
        }
        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
        rest = &rest[8..];
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        parts.push(&rest[..len]);
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(bad("unexpected bytes after its parts"));
    }
    if fnv1a64(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(bad("checksum mismatch (the file was edited or damaged)"));
    }
    Ok(parts)
}

/// A model's parameters as burnpack bytes (what [`load_model`] reads).
pub fn model_bytes<M: Module>(model: M) -> Result<Vec<u8>, VaeError> {
    Ok(model
        .into_record()
        .into_bytes()
        .map_err(|e| VaeError::Checkpoint(format!("model: {e}")))?
        .to_vec())
}

/// Loads burnpack `bytes` into `model`, rejecting a record of another architecture.
pub fn load_model<M: Module>(model: M, bytes: &[u8]) -> Result<M, VaeError> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| VaeError::Checkpoint(format!("damaged model record: {e}")))?;
    model.try_load_record(record).map_err(|e| {
        VaeError::Checkpoint(format!("the saved parameters do not fit this model: {e}"))
    })
}

/// Collects every float parameter's values, in visiting order.
struct ParamValues(Vec<Vec<f64>>);

impl ModuleVisitor for ParamValues {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(tensor_to_vec(param.val()));
    }
}

/// The values of a module's float parameters (what two models must share to be the same model; their
/// parameter ids, which burnpack files also record, are drawn per process).
pub fn parameter_values<M: Module>(module: &M) -> Vec<Vec<f64>> {
    let mut values = ParamValues(Vec::new());
    module.visit(&mut values);
    values.0
}

/// Takes each of a module's float parameters' gradients out of `grads`.
struct TakeGradients<'a>(&'a mut GradientsParams, Vec<Option<Vec<f64>>>);

impl ModuleVisitor for TakeGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.1.push(self.0.remove::<D>(param.id).map(tensor_to_vec));
    }
}

/// The gradients of a module's float parameters, in visiting order (`None` where `grads` holds none),
/// removed from `grads`: what is left belongs to other modules.
pub fn gradient_values<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
) -> Vec<Option<Vec<f64>>> {
    let mut take = TakeGradients(grads, Vec::new());
    module.visit(&mut take);
    take.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VaeConfig;
    use crate::data::{Binarization, VaeData};
    use crate::train::Trainer;
    use emvae_core::data::Matrix;
    use serde_json::Value;

    fn trainer(strategy: &str) -> Trainer {
        let text = format!(
            "[encoder]\nsizes = [4, 8, 2]\n[decoder]\nsizes = [2, 8, 4]\n[likelihood]\nkind = \"bernoulli\"\n\
             [train]\nbatch_size = 4\nepochs = 3\n[estep]\nstrategy = \"{strategy}\"\n"
        );
        let config: VaeConfig = toml::from_str(&text).unwrap();
        let values = (0..48).map(|i| f64::from(i % 3 == 0)).collect();
        let data = VaeData::new(&Matrix::new(12, 4, values), Binarization::None);
        Trainer::new(config, 0, Device::flex().autodiff(), data, None).unwrap()
    }

    /// The checkpoint of `t` with its state edited by `edit`, under a checksum that matches.
    fn edited(t: &Trainer, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let bytes = t.checkpoint_bytes().unwrap();
        let parts = split_checkpoint(&bytes).unwrap();
        let mut meta: Value = serde_json::from_slice(parts[0]).unwrap();
        edit(&mut meta);
        let meta = serde_json::to_vec(&meta).unwrap();
        let mut out = MAGIC.to_vec();
        for part in [&meta[..], parts[1], parts[2]] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn resume(t: &Trainer, bytes: &[u8]) -> Result<Trainer, VaeError> {
        Trainer::resume(
            t.config.clone(),
            t.seed,
            t.device.clone(),
            t.train.clone(),
            None,
            bytes,
        )
    }

    fn refused(t: &Trainer, bytes: &[u8], needle: &str) {
        match resume(t, bytes) {
            Err(VaeError::Checkpoint(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
            Err(e) => panic!("{needle}: another error: {e}"),
            Ok(_) => panic!("{needle}: resumed"),
        }
    }

    /// `emvae bench fuzz` found checkpoints that resumed and then panicked at the first step: a
    /// minibatch past the epoch's last, a non-amortized run without its local posteriors or with too
    /// few of them.
    #[test]
    fn a_state_the_loop_cannot_continue_from_is_refused() {
        let mut t = trainer("non_amortized");
        t.run(&mut (), Some(2)).unwrap();
        let mut resumed = resume(&t, &edited(&t, |_| {})).unwrap();
        resumed.run(&mut (), Some(1)).unwrap();
        refused(
            &t,
            &edited(&t, |m| m["state"]["batch_in_epoch"] = 3.into()),
            "minibatch 3 of an epoch of 3",
        );
        refused(
            &t,
            &edited(&t, |m| m["local"] = Value::Null),
            "without its local posteriors",
        );
        refused(
            &t,
            &edited(&t, |m| {
                m["local"]["t"].as_array_mut().unwrap().pop();
            }),
            "local posteriors of 11 rows",
        );
        refused(
            &t,
            &edited(&t, |m| m["local"]["latent"] = 3.into()),
            "in 3 dimensions",
        );
        let amortized = trainer("amortized");
        let local = serde_json::to_value(&t.local).unwrap();
        refused(
            &amortized,
            &edited(&amortized, |m| m["local"] = local),
            "local posteriors in the checkpoint of an amortized run",
        );
    }
}

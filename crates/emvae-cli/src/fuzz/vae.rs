//! The VAE checkpoint target: checkpoint containers, optimiser states and model records.

use burn::tensor::Device;
use emvae_core::data::Matrix;
use emvae_vae::adam::Adam;
use emvae_vae::data::{Binarization, VaeData};
use emvae_vae::train::{Trainer, load_model};
use emvae_vae::{Vae, VaeConfig};

use super::json::json_input;
use super::mutate::{BIG, Mutator, Rng, Seed};
use super::{Case, Target, Verdict};
use crate::error::{CliError, CliResult};

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes.get(at..at.checked_add(8)?)?);
    Some(u64::from_le_bytes(word))
}

/// The three parts (state, model, optimiser) of a checkpoint: tag, then each part after its u64
/// length, then the checksum.
fn container_parts(bytes: &[u8]) -> Option<[Vec<u8>; 3]> {
    let mut at = 8;
    let mut parts = Vec::new();
    for _ in 0..3 {
        let len = read_u64(bytes, at)? as usize;
        at += 8;
        parts.push(bytes.get(at..at.checked_add(len)?)?.to_vec());
        at += len;
    }
    parts.try_into().ok()
}

/// Offsets of the Adam state's count, presence bytes, update counts and lengths.
fn adam_fields(bytes: &[u8]) -> Vec<usize> {
    let mut hot = vec![8];
    let count = read_u64(bytes, 8).unwrap_or(0);
    let mut at = 16;
    for _ in 0..count.min(64) {
        hot.push(at);
        if bytes.get(at) != Some(&1) {
            at += 1;
            continue;
        }
        hot.extend([at + 1, at + 9]);
        let len = read_u64(bytes, at + 9).unwrap_or(0) as usize;
        at += 17 + 8 * len;
    }
    hot
}

/// Tag, parts with `lengths` (their own unless edited) and the checksum of all that.
fn assemble(tag: &[u8], parts: &[Vec<u8>; 3], lengths: [u64; 3]) -> Vec<u8> {
    let mut out = tag.to_vec();
    for (part, len) in parts.iter().zip(lengths) {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    let sum = emvae_core::hash::fnv1a64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// `Trainer::resume` on checkpoint bytes (a resumed run then takes a step), `Adam::from_bytes` on
/// optimiser states and `load_model` on model records, for an amortized and a non-amortized tiny VAE.
pub(super) struct VaeCheckpointTarget {
    configs: Vec<VaeConfig>,
    data: VaeData,
    device: Device,
    /// Trained models by config: what optimiser states are restored for.
    models: Vec<Vae>,
    /// Config of each checkpoint seed.
    seed_config: Vec<usize>,
    containers: Mutator,
    metas: Mutator,
    records: Mutator,
    optimisers: Mutator,
}

const VAE_CONFIG: &str = "[encoder]\nsizes = [4, 8, 2]\n[decoder]\nsizes = [2, 8, 4]\n[likelihood]\n\
                          kind = \"bernoulli\"\n[train]\nbatch_size = 4\nepochs = 3\n[eval]\nevery = 1000\n\
                          iw_samples = 2\nfinal_iw_samples = 2\n";

impl VaeCheckpointTarget {
    pub(super) fn new() -> CliResult<Self> {
        let fail = |e: &dyn std::fmt::Display| {
            CliError::runtime(format!("fuzz: cannot build the VAE checkpoint seeds: {e}"))
        };
        let configs: Vec<VaeConfig> = [
            VAE_CONFIG.to_string(),
            format!("{VAE_CONFIG}[estep]\nstrategy = \"non_amortized\"\n"),
        ]
        .iter()
        .map(|t| toml::from_str(t).map_err(|e| fail(&e)))
        .collect::<CliResult<_>>()?;
        let values: Vec<f64> = (0..48).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
        let data = VaeData::new(&Matrix::new(12, 4, values), Binarization::None);
        let device = Device::flex().autodiff();
        let (mut containers, mut metas, mut records, mut optimisers) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut models, mut seed_config) = (Vec::new(), Vec::new());
        for (c, config) in configs.iter().enumerate() {
            let mut trainer = Trainer::new(config.clone(), 0, device.clone(), data.clone(), None)
                .map_err(|e| fail(&e))?;
            for steps in [0, 2, 1] {
                trainer.run(&mut (), Some(steps)).map_err(|e| fail(&e))?;
                let bytes = trainer.checkpoint_bytes().map_err(|e| fail(&e))?;
                let [meta, record, optimiser] = container_parts(&bytes)
                    .ok_or_else(|| fail(&"a checkpoint without three parts"))?;
                let lengths = [meta.len(), record.len()];
                let hot = vec![8, 16 + lengths[0], 24 + lengths[0] + lengths[1]];
                containers.push(Seed { bytes, hot });
                metas.push(Seed::text(String::from_utf8_lossy(&meta)));
                records.push(Seed {
                    bytes: record,
                    hot: vec![0, 4, 6],
                });
                optimisers.push(Seed {
                    hot: adam_fields(&optimiser),
                    bytes: optimiser,
                });
                seed_config.push(c);
            }
            models.push(trainer.model.clone());
        }
        Ok(Self {
            configs,
            data,
            device,
            models,
            seed_config,
            containers: Mutator::new(containers, true),
            metas: Mutator::new(metas, false),
            records: Mutator::new(records, true),
            optimisers: Mutator::new(optimisers, true),
        })
    }

    /// Checkpoint bytes from seed `k`: parts edited and reassembled with their checksum (so that the
    /// checks behind it are reached), or the whole file edited, its checksum recomputed or not.
    fn checkpoint(&self, rng: &mut Rng, k: usize) -> Vec<u8> {
        let seed = &self.containers.seeds[k].bytes;
        let tag = &seed[..8];
        if rng.chance(30) {
            let mut bytes = self.containers.mutated(rng, k);
            if rng.chance(60) && bytes.len() >= 8 {
                let n = bytes.len() - 8;
                let sum = emvae_core::hash::fnv1a64(&bytes[..n]);
                bytes[n..].copy_from_slice(&sum.to_le_bytes());
            }
            return bytes;
        }
        let mut parts = [
            self.metas.seeds[k].bytes.clone(),
            self.records.seeds[k].bytes.clone(),
            self.optimisers.seeds[k].bytes.clone(),
        ];
        for _ in 0..1 + rng.below(2) {
            match rng.below(5) {
                0..=2 => parts[0] = json_input(rng, &self.metas, k),
                3 => parts[1] = self.records.mutated(rng, k),
                _ => parts[2] = self.optimisers.mutated(rng, k),
            }
        }
        if rng.chance(10) {
            let other = rng.below(self.containers.seeds.len());
            let p = rng.below(3);
            parts[p] = [&self.metas, &self.records, &self.optimisers][p].seeds[other]
                .bytes
                .clone();
        }
        let mut lengths = parts.each_ref().map(|p| p.len() as u64);
        if rng.chance(10) {
            lengths[rng.below(3)] = *rng.pick(BIG);
        }
        assemble(tag, &parts, lengths)
    }
}

impl Target for VaeCheckpointTarget {
    fn name(&self) -> &'static str {
        "vae-checkpoint"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let k = rng.below(self.containers.seeds.len());
        let entry = match rng.below(10) {
            0..=5 => 0,
            6 | 7 => 1,
            _ => 2,
        };
        let bytes = match entry {
            0 => self.checkpoint(rng, k),
            1 => self.optimisers.mutated(rng, k),
            _ => self.records.mutated(rng, k),
        };
        Case {
            bytes,
            variant: entry * 2 + self.seed_config[k],
        }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let config = &self.configs[case.variant % 2];
        Ok(match case.variant / 2 {
            0 => Trainer::resume(
                config.clone(),
                0,
                self.device.clone(),
                self.data.clone(),
                None,
                &case.bytes,
            )
            .map_err(|e| e.to_string())
            .map(|mut trainer| {
                // A resumed run continues: one step (its errors, such as a divergence, are not the
                // loader's).
                let _ = trainer.run(&mut (), Some(1));
            }),
            1 => Adam::from_bytes(&config.train, &case.bytes, &self.models[case.variant % 2])
                .map(|_| ()),
            _ => load_model(Vae::new(config, 0, &self.device), &case.bytes)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        })
    }

    fn describe(&self, variant: usize) -> String {
        let strategy = if variant.is_multiple_of(2) {
            "amortized"
        } else {
            "non-amortized"
        };
        match variant / 2 {
            0 => format!("Trainer::resume of an {strategy} VAE's checkpoint, then one step"),
            1 => format!("Adam::from_bytes for an {strategy} VAE"),
            _ => "load_model of a VAE's model record".into(),
        }
    }
}

//! Adam (Kingma and Ba 2015) with its update fused into one pass over each parameter, split across
//! the machine's cores.
//!
//! burn's `Adam` composes the update from about a dozen whole-tensor operations per parameter, each
//! a pass over memory on a single core; on a sentence VAE's ten million parameters that was a sixth
//! of the step. Here each parameter is read once, its moments updated in place on the host and the new
//! value written once. The maths is burn's (and PyTorch's, with L2 weight decay):
//!
//! g ← g + λ θ;  m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;
//! θ ← θ − α √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m / (√v + ε √(1 − β₂ᵗ)),
//!
//! with t counted per parameter (an aggressive inner loop steps the encoder more often than the
//! decoder). The moments are kept by the parameter's position in the module (its visiting order), so
//! they are saved and restored independently of burn's parameter ids.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Tensor};

use crate::config::TrainConfig;

/// Tag of the serialised state.
const MAGIC: &[u8; 8] = b"EMVAEAD1";
/// Elements below which an update runs on one thread (a thread's start costs about this much work).
const MIN_PER_THREAD: usize = 1 << 17;

/// First and second moments of one parameter.
#[derive(Debug, Clone, PartialEq)]
struct Moments {
    /// Updates applied to this parameter.
    time: u64,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// The optimiser: hyper-parameters and the moments of every parameter, in visiting order.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
    moments: Vec<Option<Moments>>,
}

impl Adam {
    pub fn new(config: &TrainConfig) -> Self {
        Self {
            beta_1: config.adam_betas[0],
            beta_2: config.adam_betas[1],
            epsilon: config.adam_eps,
            weight_decay: config.weight_decay,
            moments: Vec::new(),
        }
    }

    /// One update of the parameters of `model` that have a gradient in `grads`, at step size `lr`.
    /// Also returns where a gradient held a NaN or an infinity (the module path of the first such
    /// parameter): the update is then garbage and training must stop.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: M,
        grads: GradientsParams,
    ) -> (M, Option<String>) {
        let mut mapper = Update {
            adam: self,
            grads,
            lr,
            index: 0,
            path: Vec::new(),
            non_finite: None,
        };
        let model = model.map(&mut mapper);
        (model, mapper.non_finite)
    }

    /// The state as bytes: tag, parameter count, then per parameter a presence byte and, if present,
    /// its update count, length and moments (little-endian f32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let values: usize = self.moments.iter().flatten().map(|m| m.m.len() * 8).sum();
        let mut out = Vec::with_capacity(16 + 17 * self.moments.len() + values);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.moments.len() as u64).to_le_bytes());
        for entry in &self.moments {
            match entry {
                None => out.push(0),
                Some(m) => {
                    out.push(1);
                    out.extend_from_slice(&m.time.to_le_bytes());
                    out.extend_from_slice(&(m.m.len() as u64).to_le_bytes());
                    for x in m.m.iter().chain(&m.v) {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Restores the state written by [`Adam::to_bytes`] for `model`, whose parameters it must match.
    pub fn from_bytes<M: Module>(
        config: &TrainConfig,
        bytes: &[u8],
        model: &M,
    ) -> Result<Self, String> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(8)? != MAGIC {
            return Err("not emvae's Adam state".into());
        }
        let count = reader.u64()? as usize;
        let sizes = parameter_sizes(model);
        if count > sizes.len() {
            return Err(format!(
                "moments of {count} parameters, but the model has {}",
                sizes.len()
            ));
        }
        let mut moments = Vec::with_capacity(count);
        for (i, &size) in sizes.iter().enumerate().take(count) {
            match reader.take(1)?[0] {
                0 => moments.push(None),
                1 => {
                    let time = reader.u64()?;
                    let len = reader.u64()? as usize;
                    if len != size {
                        return Err(format!(
                            "parameter {i} has {size} values, its moments {len}"
                        ));
                    }
                    let m = reader.f32s(len)?;
                    let v = reader.f32s(len)?;
                    moments.push(Some(Moments { time, m, v }));
                }
                other => return Err(format!("bad presence byte {other} at parameter {i}")),
            }
        }
        if reader.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - reader.at));
        }
        Ok(Self {
            moments,
            ..Self::new(config)
        })
    }
}

/// Bounds-checked little-endian reads.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let len = n.checked_mul(4).ok_or("length overflows")?;
        let b = self.take(len)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("four bytes")))
            .collect())
    }
}

/// Number of values of each float parameter, in visiting order.
pub(crate) fn parameter_sizes<M: Module>(model: &M) -> Vec<usize> {
    struct Sizes(Vec<usize>);
    impl ModuleVisitor for Sizes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.shape().num_elements());
        }
    }
    let mut sizes = Sizes(Vec::new());
    model.visit(&mut sizes);
    sizes.0
}

/// The mapper that applies one update to each parameter with a gradient.
struct Update<'a> {
    adam: &'a mut Adam,
    grads: GradientsParams,
    lr: f64,
    index: usize,
    /// The module path being visited.
    path: Vec<String>,
    /// The first parameter whose gradient was not finite.
    non_finite: Option<String>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.index;
        self.index += 1;
        let here = format!("{} (parameter {index})", self.path.join("."));
        let non_finite = &mut self.non_finite;
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let adam = &mut *self.adam;
        let lr = self.lr;
        param.map(|value| {
            let device = value.device();
            let tracked = value.is_require_grad();
            // Updated in place in the tensor's own buffer: no copy of a parameter or its gradient
            // (the vocabulary-sized ones are 10 MB each) unless they are not f32.
            let mut data = value.into_data();
            let dtype = data.dtype();
            if dtype != DType::F32 {
                data = data.convert_dtype(DType::F32);
            }
            let grad = grad.into_data().convert_dtype(DType::F32);
            let theta = data.as_mut_slice::<f32>().expect("converted to f32 above");
            let g = grad.as_slice::<f32>().expect("converted to f32 above");
            if adam.moments.len() <= index {
                adam.moments.resize(index + 1, None);
            }
            let moments = adam.moments[index].get_or_insert_with(|| Moments {
                time: 0,
                m: vec![0.0; theta.len()],
                v: vec![0.0; theta.len()],
            });
            moments.time += 1;
            // The corrections in f32, as burn computes them (checkpoints continue either way).
            let t = moments.time.min(i32::MAX as u64) as i32;
            let (beta_1, beta_2) = (adam.beta_1 as f32, adam.beta_2 as f32);
            let bias_2 = (1.0 - beta_2.powi(t)).sqrt();
            let coeffs = Coeffs {
                beta_1,
                beta_2,
                step: lr as f32 * (bias_2 / (1.0 - beta_1.powi(t))),
                epsilon: adam.epsilon as f32 * bias_2,
                weight_decay: adam.weight_decay as f32,
            };
            if !update(theta, g, &mut moments.m, &mut moments.v, &coeffs) {
                non_finite.get_or_insert(here);
            }
            let data = data.convert_dtype(dtype);
            let next = Tensor::<D>::from_data(data, &device);
            if tracked { next.require_grad() } else { next }
        })
    }
}

/// The scalars of one update.
struct Coeffs {
    beta_1: f32,
    beta_2: f32,
    /// α √(1 − β₂ᵗ) / (1 − β₁ᵗ).
    step: f32,
    /// ε √(1 − β₂ᵗ).
    epsilon: f32,
    weight_decay: f32,
}

/// The fused update over whole slices, cut into contiguous pieces run on the machine's cores.
/// Returns whether every gradient was finite.
fn update(theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Coeffs) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(theta.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return update_serial(theta, g, m, v, c);
    }
    let piece = theta.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut pieces = theta
            .chunks_mut(piece)
            .zip(g.chunks(piece))
            .zip(m.chunks_mut(piece).zip(v.chunks_mut(piece)));
        let first = pieces.next();
        let handles: Vec<_> = pieces
            .map(|((theta, g), (m, v))| scope.spawn(move || update_serial(theta, g, m, v, c)))
            .collect();
        let mut finite = first.is_none_or(|((theta, g), (m, v))| update_serial(theta, g, m, v, c));
        for handle in handles {
            finite &= handle.join().unwrap_or(false);
        }
        finite
    })
}

fn update_serial(theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Coeffs) -> bool {
    let (b1, b2) = (c.beta_1, c.beta_2);
    let mut finite = true;
    for (((p, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
        finite &= g.is_finite();
        let g = g + c.weight_decay * *p;
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        *p -= c.step * *m / (v.sqrt() + c.epsilon);
    }
    finite
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, decay::WeightDecayConfig};
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    fn net(device: &Device) -> Net {
        Net {
            a: LinearConfig::new(300, 250).init(device),
            b: LinearConfig::new(250, 3).init(device),
        }
    }

    fn loss(net: &Net, device: &Device) -> Tensor<1> {
        let x = Tensor::<2>::from_data(
            TensorData::new(
                (0..600)
                    .map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.5)
                    .collect(),
                [2, 300],
            ),
            device,
        );
        net.b.forward(net.a.forward(x).tanh()).powi_scalar(2).sum()
    }

    fn params(net: &Net) -> Vec<f32> {
        [
            net.a.weight.val().into_data(),
            net.b.weight.val().into_data(),
            net.b
                .bias
                .as_ref()
                .map(|b| b.val().into_data())
                .expect("bias"),
        ]
        .into_iter()
        .flat_map(|d| d.try_into_vec::<f32>().expect("f32"))
        .collect()
    }

    /// The fused update equals burn's composed one (with weight decay), step for step, and the state
    /// saved and restored continues identically. Both optimisers step from the same parameters with
    /// the same gradients each time: two separate trajectories would drift apart by rounding, which
    /// Adam's normalisation amplifies wherever a gradient nearly cancels (to 1e-3 of the step for about
    /// one random initialisation in 30), so comparing trajectories would test the starting weights,
    /// not the update.
    #[test]
    fn matches_burns_adam_and_resumes() {
        let device = Device::flex().autodiff();
        let config = TrainConfig {
            weight_decay: 0.01,
            ..TrainConfig::default()
        };
        let mut reference = AdamConfig::new()
            .with_beta_1(config.adam_betas[0] as f32)
            .with_beta_2(config.adam_betas[1] as f32)
            .with_epsilon(config.adam_eps as f32)
            .with_weight_decay(Some(WeightDecayConfig::new(0.01)))
            .init();
        let mut ours = Adam::new(&config);
        let mut our_net = net(&device);
        for step in 0..6 {
            let before = params(&our_net);
            let g = GradientsParams::from_grads(loss(&our_net, &device).backward(), &our_net);
            let theirs_net = reference.step(1e-2, our_net.clone(), g);
            let g = GradientsParams::from_grads(loss(&our_net, &device).backward(), &our_net);
            our_net = ours.step(1e-2, our_net, g).0;
            let (theirs, after) = (params(&theirs_net), params(&our_net));
            for (a, b) in theirs.iter().zip(&after) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "step {step}: {a} vs {b}"
                );
            }
            // The parameters moved by about the step size, so the comparison is not vacuous.
            let moved = after
                .iter()
                .zip(&before)
                .map(|(b, p)| (b - p).abs())
                .sum::<f32>();
            assert!(
                moved / after.len() as f32 > 2e-3,
                "step {step}: moved {moved}"
            );
        }
        let restored = Adam::from_bytes(&config, &ours.to_bytes(), &our_net).expect("restores");
        assert_eq!(restored, ours);
        let mut resumed = restored;
        let copy = our_net.clone();
        let g = GradientsParams::from_grads(loss(&our_net, &device).backward(), &our_net);
        let next = ours.step(1e-2, our_net, g).0;
        let g = GradientsParams::from_grads(loss(&copy, &device).backward(), &copy);
        let next_resumed = resumed.step(1e-2, copy, g).0;
        assert_eq!(params(&next), params(&next_resumed));
    }

    /// A NaN in any gradient is reported with the parameter's module path (large parameters are
    /// updated on several threads; the NaN sits in the second piece).
    #[test]
    fn a_non_finite_gradient_is_named() {
        let device = Device::flex().autodiff();
        let config = TrainConfig::default();
        let mut adam = Adam::new(&config);
        let n = Net {
            a: LinearConfig::new(300, 1000).init(&device),
            b: LinearConfig::new(1000, 3).init(&device),
        };
        let g = GradientsParams::from_grads(loss(&n, &device).backward(), &n);
        let (n, bad) = adam.step(1e-3, n, g);
        assert_eq!(bad, None, "finite gradients");
        let mut g = GradientsParams::from_grads(loss(&n, &device).backward(), &n);
        let id = n.a.weight.id;
        let grad: Tensor<2> = g.remove(id).expect("a gradient");
        let mut values = grad.into_data().try_into_vec::<f32>().unwrap();
        let last = values.len() - 1;
        values[last] = f32::NAN;
        g.register(
            id,
            Tensor::<2>::from_data(
                TensorData::new(values, [300, 1000]),
                &device.clone().inner(),
            ),
        );
        let (_, bad) = adam.step(1e-3, n, g);
        let bad = bad.expect("the NaN is found");
        assert!(bad.starts_with("a") && bad.contains("parameter"), "{bad}");
    }

    #[test]
    fn refuses_damaged_or_foreign_state() {
        let device = Device::flex().autodiff();
        let config = TrainConfig::default();
        let mut adam = Adam::new(&config);
        let n = net(&device);
        let g = GradientsParams::from_grads(loss(&n, &device).backward(), &n);
        let n = adam.step(1e-3, n, g).0;
        let bytes = adam.to_bytes();
        let truncated = Adam::from_bytes(&config, &bytes[..bytes.len() - 3], &n);
        assert!(truncated.unwrap_err().contains("truncated"));
        let other = Net {
            a: LinearConfig::new(300, 20).init(&device),
            b: LinearConfig::new(20, 3).init(&device),
        };
        let foreign = Adam::from_bytes(&config, &bytes, &other);
        assert!(foreign.unwrap_err().contains("values"));
        assert!(Adam::from_bytes(&config, b"not adam", &n).is_err());
    }
}

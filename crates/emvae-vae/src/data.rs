//! Training data for the VAE: rows on the host in f32, batched in a seeded order, with binarisation
//! (fixed threshold, or stochastic and redrawn every epoch).

use burn::tensor::{Device, Tensor, TensorData};
use emvae_core::data::Matrix;
use emvae_core::rng::rng_for;
use rand::Rng as _;

/// How the rows are binarised when batched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Binarization {
    /// Use values as they are.
    None,
    /// Each value is 1 with probability equal to it (values in [0, 1]), redrawn every epoch from the seed.
    Stochastic { seed: u64 },
}

/// A data set held for training or evaluation.
#[derive(Debug, Clone)]
pub struct VaeData {
    pub n: usize,
    pub d: usize,
    values: Vec<f32>,
    binarization: Binarization,
}

impl VaeData {
    pub fn new(m: &Matrix, binarization: Binarization) -> Self {
        Self {
            n: m.n_rows,
            d: m.n_cols,
            values: m.values.iter().map(|&v| v as f32).collect(),
            binarization,
        }
    }

    /// The same data with stochastic binarisation drawn once (`epoch` fixed): evaluation sets are
    /// binarised once, as in the literature.
    pub fn fixed(&self, epoch: u64) -> Self {
        let rows: Vec<usize> = (0..self.n).collect();
        Self {
            n: self.n,
            d: self.d,
            values: self.rows(&rows, epoch),
            binarization: Binarization::None,
        }
    }

    /// Host values of `rows` (binarised for `epoch`).
    pub fn rows(&self, rows: &[usize], epoch: u64) -> Vec<f32> {
        let d = self.d;
        let mut out = Vec::with_capacity(rows.len() * d);
        for &r in rows {
            let row = &self.values[r * d..(r + 1) * d];
            match self.binarization {
                Binarization::None => out.extend_from_slice(row),
                Binarization::Stochastic { seed } => {
                    let mut rng =
                        rng_for(seed, b"binarize", epoch.wrapping_mul(1 << 32) ^ r as u64);
                    out.extend(
                        row.iter()
                            .map(|&p| if rng.random::<f32>() < p { 1.0 } else { 0.0 }),
                    );
                }
            }
        }
        out
    }

    /// A `[rows, d]` tensor of `rows`.
    pub fn tensor(&self, rows: &[usize], epoch: u64, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.rows(rows, epoch), [rows.len(), self.d]),
            device,
        )
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

/// Standard-normal noise `[rows, cols]` drawn on the host from `(seed, stream, index)`: reproducible
/// across backends and across interrupted and resumed runs.
pub fn normal_noise(
    rows: usize,
    cols: usize,
    seed: u64,
    stream: &[u8],
    index: u64,
    device: &Device,
) -> Tensor<2> {
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rng_for(seed, stream, index);
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let v: f32 = StandardNormal.sample(&mut rng);
            v
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

impl crate::amortized::TrainData for VaeData {
    type Batch = Tensor<2>;

    fn len(&self) -> usize {
        self.n
    }

    fn batch(&self, rows: &[usize], epoch: u64, device: &Device) -> Tensor<2> {
        self.tensor(rows, epoch, device)
    }

    fn for_evaluation(&self) -> Self {
        self.fixed(0)
    }

    fn shape(&self) -> (usize, usize) {
        (self.n, self.d)
    }

    fn row_cost(&self) -> usize {
        self.d
    }
}

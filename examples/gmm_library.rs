//! Using emvae as a library: fit a Gaussian mixture by exact EM, with scikit-learn's estimator contract.
//!
//! ```sh
//! cargo run --release --example gmm_library
//! ```

use burn::tensor::Device;
use emvae::core::data::synthetic::SyntheticMixture;
use emvae::core::tensor::{Compute, Precision};
use emvae::em::gmm::{CovarianceType, GmmParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The device is chosen here, at the edge, and passed down.
    let compute = Compute::new(Device::flex(), Precision::F64);

    // 3,000 points from a random 4-component mixture in 2-D, 5% of them labelled.
    let generated = SyntheticMixture {
        n_samples: 3000,
        n_features: 2,
        n_components: 4,
        separation: 3.0,
        label_fraction: 0.05,
        seed: 7,
    }
    .generate();

    // Unchecked hyper-parameters -> checked ones -> a fitted model.
    let params = GmmParams::new(4)
        .covariance_type(CovarianceType::Full)
        .tol(1e-6)
        .n_init(3)
        .seed(0)
        .check()?;
    let model = params.fit(&generated.data, &compute)?;

    println!(
        "converged: {} after {} iterations; average log-likelihood {:.4}",
        model.converged, model.n_iter, model.lower_bound
    );
    println!("weights: {:?}", model.parameters.weights);
    println!(
        "BIC {:.1}, AIC {:.1}",
        model.bic(&generated.data.x, &compute)?,
        model.aic(&generated.data.x, &compute)?
    );
    let labels = model.predict(&generated.data.x, &compute)?;
    let agree = labels
        .iter()
        .zip(&generated.components)
        .filter(|(a, b)| a == b)
        .count();
    // Labelled rows pinned the components' identities, so labels are comparable without permuting.
    println!(
        "predicted component = true component for {agree} of {} rows",
        labels.len()
    );
    let (draws, components) = model.sample(5, 1)?;
    for (row, c) in draws.rows().zip(&components) {
        println!("sample from component {c}: {row:?}");
    }
    Ok(())
}

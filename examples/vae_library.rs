//! Using emvae as a library: train a VAE on binary data, then read its diagnostics and latent codes.
//!
//! ```sh
//! cargo run --release --example vae_library
//! ```

use burn::module::Module;
use burn::tensor::Device;
use emvae::core::data::Matrix;
use emvae::core::rng::rng_for;
use emvae::vae::VaeConfig;
use emvae::vae::data::{Binarization, VaeData};
use emvae::vae::diagnostics::encode_all;
use emvae::vae::inference::PosteriorSource;
use emvae::vae::train::Trainer;
use rand::Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 2,000 binary rows of 32 pixels: 8 prototypes, each pixel flipped with probability 0.05.
    let mut rng = rng_for(1, b"example", 0);
    let prototypes: Vec<Vec<bool>> = (0..8)
        .map(|_| (0..32).map(|_| rng.random()).collect())
        .collect();
    let mut values = Vec::new();
    for _ in 0..2000 {
        let p = &prototypes[rng.random_range(0..8)];
        values.extend(p.iter().map(|&b| {
            if b ^ (rng.random::<f64>() < 0.05) {
                1.0
            } else {
                0.0
            }
        }));
    }
    let x = Matrix::new(2000, 32, values);

    let config: VaeConfig = toml::from_str(
        r#"
        [encoder]
        sizes = [32, 128, 4]
        [decoder]
        sizes = [4, 128, 32]
        [likelihood]
        kind = "bernoulli"
        [train]
        epochs = 30
        batch_size = 100
        [eval]
        every = 10
        iw_samples = 50
        "#,
    )?;
    let train = VaeData::new(&x.slice_rows(0, 1600), Binarization::None);
    let test = VaeData::new(&x.slice_rows(1600, 2000), Binarization::None);
    let mut trainer = Trainer::new(config, 0, Device::flex().autodiff(), train, Some(test))?;
    trainer.run(&mut (), None)?;

    let (d, _) = trainer.final_diagnostics()?;
    println!(
        "held out: ELBO {:.3}, KL {:.3}, active units {}, I(x; z) {:.3}, NLL (IW-{}) {:.3}",
        d.elbo,
        d.kl,
        d.active_units,
        d.mutual_information,
        d.iw.map_or(0, |w| w.samples),
        d.iw.map_or(f64::NAN, |w| w.nll)
    );
    let test = trainer.test.clone().expect("held out");
    let (means, _) = encode_all(
        &trainer.model.valid(),
        &test,
        &PosteriorSource::Encoder,
        &Device::flex(),
    );
    println!("latent code of the first held-out row: {:?}", &means[..4]);
    Ok(())
}

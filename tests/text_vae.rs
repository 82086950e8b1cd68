//! The sentence VAE on a generated corpus with known factors: it models the text far better than a
//! unigram model, its code carries the factors (a linear probe recovers sentiment and topic from the
//! posterior means, and, less sharply, from posterior samples), and training resumes bit for bit.

use burn::module::Module;
use burn::tensor::Device;
use emvae::core::linalg::spd_inverse;
use emvae::text::batch::TextData;
use emvae::text::corpus::{CorpusOptions, parse_corpus};
use emvae::text::grammar::{GrammarSpec, LabelFactor, TOPICS, generate, to_lines};
use emvae::text::inference::{Decoding, decode, encode};
use emvae::text::vocab::Vocab;
use emvae::text::{TextDataset, TextTrainer, TextVaeConfig};
use emvae::vae::train::parameter_values;
use rand::Rng as _;

struct Setup {
    config: TextVaeConfig,
    train: TextData,
    test: TextData,
    vocab: Vocab,
    train_factors: Vec<(usize, usize)>,
    test_factors: Vec<(usize, usize)>,
}

fn setup(n_train: usize, n_test: usize, extra: &str) -> Setup {
    let sentences = generate(&GrammarSpec {
        n_sentences: n_train + n_test,
        seed: 3,
    });
    let text = to_lines(&sentences, LabelFactor::None);
    let corpus = parse_corpus(
        text.as_bytes(),
        std::path::Path::new("generated"),
        &CorpusOptions::default(),
    )
    .unwrap();
    let (train_c, test_c) = corpus.split_last(n_test).unwrap();
    // A bidirectional encoder: the factors show at both ends of a sentence, and a left-to-right
    // encoder's final state keeps mostly its end.
    let mut config: TextVaeConfig = toml::from_str(&format!(
        "latent = 16\nembedding = 32\ndropout = 0.0\nword_dropout = 0.5\n\
         [encoder]\nhidden = 64\nbidirectional = true\n[decoder]\nhidden = 64\n\
         [objective]\nannealing = \"linear\"\nanneal_steps = 600\nfree_bits = 0.5\n\
         [train]\nbatch_size = 32\nepochs = 20\nlr = 5e-3\n\
         [eval]\niw_samples = 10\nfinal_iw_samples = 50\n{extra}"
    ))
    .unwrap();
    let vocab = Vocab::build(&train_c.sentences, None, 1);
    config.vocab_size = vocab.len();
    let (train, _) = TextData::new(&train_c, &vocab, &[]).unwrap();
    let (test, _) = TextData::new(&test_c, &vocab, &[]).unwrap();
    let factors = |s: &[emvae::text::grammar::GeneratedSentence]| {
        s.iter().map(|g| (g.sentiment, g.topic)).collect::<Vec<_>>()
    };
    Setup {
        config,
        train_factors: factors(&sentences[..n_train]),
        test_factors: factors(&sentences[n_train..]),
        train,
        test,
        vocab,
    }
}

fn trainer(s: &Setup, seed: u64) -> TextTrainer {
    let v = s.vocab.len();
    TextTrainer::new(
        s.config.clone(),
        seed,
        Device::flex().autodiff(),
        TextDataset::training(s.train.clone(), v, seed),
        Some(TextDataset::evaluation(s.test.clone(), v)),
    )
    .unwrap()
}

/// Per-sentence NLL (nats) of the held-out sentences under the training split's add-one unigram model,
/// counting words and `<eos>` as the sentence VAE does.
fn unigram_nll(train: &TextData, test: &TextData, v: usize) -> f64 {
    let mut counts = vec![1.0f64; v];
    for s in &train.sentences {
        for &w in s {
            counts[w as usize] += 1.0;
        }
        counts[emvae::text::vocab::EOS as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let nll: f64 = test
        .sentences
        .iter()
        .map(|s| {
            s.iter()
                .chain(std::iter::once(&emvae::text::vocab::EOS))
                .map(|&w| -(counts[w as usize] / total).ln())
                .sum::<f64>()
        })
        .sum();
    nll / test.len() as f64
}

/// Accuracy on `(x_test, y_test)` of one-vs-rest ridge regression fitted on `(x, y)` (`k` classes).
fn probe_accuracy(x: &[f64], y: &[usize], xt: &[f64], yt: &[usize], d: usize, k: usize) -> f64 {
    let w = d + 1;
    let row = |x: &[f64], i: usize| -> Vec<f64> {
        let mut r = x[i * d..(i + 1) * d].to_vec();
        r.push(1.0);
        r
    };
    let mut gram = vec![0.0; w * w];
    let mut rhs = vec![0.0; w * k];
    for (i, &label) in y.iter().enumerate() {
        let r = row(x, i);
        for a in 0..w {
            for b in 0..w {
                gram[a * w + b] += r[a] * r[b];
            }
            rhs[a * k + label] += r[a];
        }
    }
    for a in 0..w {
        gram[a * w + a] += 1e-3;
    }
    let inv = spd_inverse(&gram, w).unwrap();
    let mut correct = 0;
    for (i, &label) in yt.iter().enumerate() {
        let r = row(xt, i);
        let scores: Vec<f64> = (0..k)
            .map(|c| {
                (0..w)
                    .map(|a| r[a] * (0..w).map(|b| inv[a * w + b] * rhs[b * k + c]).sum::<f64>())
                    .sum()
            })
            .collect();
        let best = (0..k)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        correct += usize::from(best == label);
    }
    correct as f64 / yt.len() as f64
}

#[test]
fn sentence_vae_beats_unigram_and_its_codes_carry_sentiment_and_topic() {
    let s = setup(2000, 400, "");
    let mut t = trainer(&s, 1);
    let start = std::time::Instant::now();
    t.run(&mut (), None).unwrap();
    let (d, _) = t.final_diagnostics().unwrap();
    let iw = d.iw.unwrap();
    let unigram = unigram_nll(&s.train, &s.test, s.vocab.len());
    eprintln!(
        "trained in {:.1} s ({:.0} tokens/s); held-out NLL {:.3} (IW-{}), ELBO {:.3}, KL {:.3}, AU {}, MI {:.3}; unigram {:.3}",
        start.elapsed().as_secs_f64(),
        t.state.units as f64 / t.state.seconds,
        iw.nll,
        iw.samples,
        d.elbo,
        d.kl,
        d.active_units,
        d.mutual_information,
        unigram
    );
    assert!(
        iw.nll < 0.6 * unigram,
        "NLL {} vs unigram {unigram}",
        iw.nll
    );
    assert!(d.kl > 1.0, "the latent code is used: KL {}", d.kl);

    let model = t.model.valid();
    let plain = Device::flex();
    let (train_means, train_lv) = encode(&model, &s.train, &plain);
    let (test_means, test_lv) = encode(&model, &s.test, &plain);
    // One draw z ~ q(z | x) per sentence: the factors must pass through the noisy code, not only
    // through tiny input-dependent wiggles of the means (an untrained or collapsed encoder's means are
    // still a function of the input, and a linear probe can read this corpus's factors off them).
    let sample = |mean: &[f64], log_var: &[f64], stream: &[u8]| -> Vec<f64> {
        let mut rng = emvae::core::rng::rng_for(7, stream, 0);
        mean.iter()
            .zip(log_var)
            .map(|(&m, &lv)| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                m + (0.5 * lv).exp() * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    };
    let train_z = sample(&train_means, &train_lv, b"probe-train");
    let test_z = sample(&test_means, &test_lv, b"probe-test");
    let l = s.config.latent;
    for (factor, k, name) in [(0, 2, "sentiment"), (1, TOPICS.len(), "topic")] {
        let pick = |f: &[(usize, usize)]| -> Vec<usize> {
            f.iter()
                .map(|p| if factor == 0 { p.0 } else { p.1 })
                .collect()
        };
        let acc = probe_accuracy(
            &train_means,
            &pick(&s.train_factors),
            &test_means,
            &pick(&s.test_factors),
            l,
            k,
        );
        let chance = 1.0 / k as f64;
        let acc_z = probe_accuracy(
            &train_z,
            &pick(&s.train_factors),
            &test_z,
            &pick(&s.test_factors),
            l,
            k,
        );
        eprintln!(
            "linear probe on posterior means: {name} accuracy {acc:.3}, on posterior samples {acc_z:.3} \
             (chance {chance:.3})"
        );
        assert!(acc > 0.85, "{name}: {acc}");
        assert!(
            acc_z > (1.0 + chance) / 2.0,
            "{name} through posterior samples: {acc_z}"
        );
    }
    // Reconstructions from the posterior means share most of their words with the inputs.
    let z = emvae::text::inference::latent_tensor(
        &test_means
            .chunks(l)
            .take(20)
            .map(<[f64]>::to_vec)
            .collect::<Vec<_>>(),
        &plain,
    );
    let recon = decode(&model, z, Decoding::Greedy, 30);
    let overlap: f64 = recon
        .iter()
        .zip(&s.test.sentences)
        .map(|(r, x)| {
            r.iter().filter(|w| x.contains(w)).count() as f64 / x.len().max(r.len()) as f64
        })
        .sum::<f64>()
        / 20.0;
    eprintln!(
        "greedy reconstruction word overlap {overlap:.3}: {:?}",
        s.vocab.decode(&recon[0])
    );
    assert!(overlap > 0.5, "overlap {overlap}");
}

#[test]
fn text_training_resumes_bit_for_bit() {
    let mut s = setup(300, 60, "");
    s.config.train.epochs = 2;
    s.config.dropout = 0.3;
    let mut whole = trainer(&s, 5);
    whole.run(&mut (), None).unwrap();
    let mut first = trainer(&s, 5);
    first.run(&mut (), Some(7)).unwrap();
    let bytes = first.checkpoint_bytes().unwrap();
    let v = s.vocab.len();
    let mut resumed = TextTrainer::resume(
        s.config.clone(),
        5,
        Device::flex().autodiff(),
        TextDataset::training(s.train.clone(), v, 5),
        Some(TextDataset::evaluation(s.test.clone(), v)),
        &bytes,
    )
    .unwrap();
    resumed.run(&mut (), None).unwrap();
    assert_eq!(whole.state.step, resumed.state.step);
    assert_eq!(
        parameter_values(&whole.model),
        parameter_values(&resumed.model)
    );
}

//! Text corpora as symbol sequences for the exact-EM models (`[corpus]`): the text models' vocabulary,
//! built from the training split and saved as the run's `vocab.json`, and every sentence ending with
//! `<eos>`, so per-sentence NLL and perplexity (words plus end-of-sentence) are the text models' too.

use std::path::{Path, PathBuf};

use emvae_core::run::RunDir;
use emvae_text::corpus::{Corpus, CorpusOptions, parse_corpus, read_corpus};
use emvae_text::grammar::{GrammarSpec, LabelFactor, generate, to_lines};
use emvae_text::vocab::{EOS, Vocab};

use crate::error::{CliError, CliResult};
use crate::runconfig::{CorpusConfig, LoadedConfig};
pub use crate::text::VOCAB_FILE;

/// A corpus as symbol ids.
pub struct Symbols {
    pub source: PathBuf,
    /// One sequence per sentence, `<eos>` last.
    pub sequences: Vec<Vec<usize>>,
    /// Words outside the vocabulary (read as `<unk>`).
    pub oov: usize,
}

impl Symbols {
    /// Tokens, `<eos>` included: the denominator of perplexity.
    pub fn n_tokens(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }
}

fn options(config: &CorpusConfig) -> CorpusOptions {
    CorpusOptions {
        max_length: config.max_length,
        overlong: config.overlong,
    }
}

fn read(path: &Path, config: &CorpusConfig) -> CliResult<Corpus> {
    read_corpus(path, &options(config)).map_err(CliError::user)
}

fn encode(corpus: &Corpus, vocab: &Vocab) -> Symbols {
    let mut oov = 0;
    let sequences = corpus
        .sentences
        .iter()
        .map(|words| {
            let (ids, unknown) = vocab.encode(words);
            oov += unknown.len();
            ids.into_iter()
                .chain(std::iter::once(EOS))
                .map(|id| id as usize)
                .collect()
        })
        .collect();
    Symbols {
        source: corpus.path.clone(),
        sequences,
        oov,
    }
}

/// The training corpus (and held-out corpus: `data.test_path`, or the last `data.test_rows` sentences)
/// with the vocabulary built from the training sentences.
pub fn training(loaded: &LoadedConfig) -> CliResult<(Vocab, Symbols, Option<Symbols>)> {
    let config = loaded
        .config
        .corpus
        .as_ref()
        .ok_or_else(|| CliError::user("a [corpus] table is needed to read text"))?;
    let data = &loaded.config.data;
    if let Some(g) = &config.generated {
        let sentences = generate(&GrammarSpec {
            n_sentences: g.n_sentences + g.n_held_out,
            seed: g.seed,
        });
        let text = to_lines(&sentences, LabelFactor::None);
        let all = parse_corpus(text.as_bytes(), Path::new("<generated>"), &options(config))
            .map_err(CliError::user)?;
        let (train, test) = if g.n_held_out > 0 {
            let (a, b) = all.split_last(g.n_held_out).map_err(CliError::user)?;
            (a, Some(b))
        } else {
            (all, None)
        };
        let vocab = Vocab::build(
            &train.sentences,
            config.vocab.max_size,
            config.vocab.min_count,
        );
        let (train, test) = (encode(&train, &vocab), test.map(|t| encode(&t, &vocab)));
        return Ok((vocab, train, test));
    }
    let path = data.path.as_deref().ok_or_else(|| {
        CliError::user("[corpus] needs [data] path = \"corpus.txt\" or [corpus.generated]")
    })?;
    let mut train = read(path, config)?;
    let test = match (&data.test_path, data.test_rows) {
        (Some(p), _) => Some(read(p, config)?),
        (None, Some(n)) => {
            let (a, b) = train.split_last(n).map_err(CliError::user)?;
            train = a;
            Some(b)
        }
        (None, None) => None,
    };
    if train.labels.is_some() {
        tracing::info!(
            "{}: the labels are not used by this model (it is fitted to the words)",
            path.display()
        );
    }
    let vocab = Vocab::build(
        &train.sentences,
        config.vocab.max_size,
        config.vocab.min_count,
    );
    let train_symbols = encode(&train, &vocab);
    let test_symbols = test.map(|t| encode(&t, &vocab));
    Ok((vocab, train_symbols, test_symbols))
}

/// The run's vocabulary.
pub fn run_vocab(run: &RunDir) -> CliResult<Vocab> {
    let path = run.path(VOCAB_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        CliError::user(format!(
            "{}: cannot read the run's vocabulary ({e})",
            path.display()
        ))
    })?;
    Vocab::from_json_bytes(&bytes).map_err(|e| CliError::user(format!("{}: {e}", path.display())))
}

/// The corpus to evaluate, in the run's vocabulary: `--data` (already in `loaded`'s `data.path`) or the
/// run's training corpus.
pub fn evaluation(loaded: &LoadedConfig, run: &RunDir) -> CliResult<(Vocab, Symbols)> {
    let config = loaded.config.corpus.clone().unwrap_or_default();
    let vocab = run_vocab(run)?;
    let symbols = match (&loaded.config.data.path, &config.generated) {
        (Some(path), _) => encode(&read(path, &config)?, &vocab),
        (None, Some(_)) => {
            // The generated training sentences, as `train` made them.
            let (_, train, _) = training(loaded)?;
            train
        }
        (None, None) => {
            return Err(CliError::user(
                "give --data (a corpus, one sentence per line)",
            ));
        }
    };
    Ok((vocab, symbols))
}

/// Per-sentence NLL and perplexity over words plus `<eos>`, from each sentence's `log p`.
pub fn text_figures(log_p: &[f64], symbols: &Symbols) -> serde_json::Value {
    let total: f64 = log_p.iter().sum();
    let tokens = symbols.n_tokens();
    serde_json::json!({
        "sentences": log_p.len(),
        "tokens": tokens,
        "oov": symbols.oov,
        "nll_per_sentence": -total / log_p.len().max(1) as f64,
        "perplexity": (-total / tokens.max(1) as f64).exp(),
    })
}

/// Sentences of symbol ids as text (up to `<eos>`).
pub fn decode(vocab: &Vocab, ids: &[usize]) -> String {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    vocab.decode(&ids).join(" ")
}

//! The vocabulary target: vocab.json files, their checksum kept matching their tokens.

use emvae_text::vocab::Vocab;
use serde_json::{Value, json};

use super::json::json_input;
use super::mutate::{Mutator, Rng, Seed};
use super::{Case, Target, Verdict};
use crate::error::CliResult;

/// `Vocab::from_json_bytes` on vocab.json files; an accepted vocabulary encodes and decodes.
pub(super) struct VocabTarget {
    mutator: Mutator,
}

impl VocabTarget {
    pub(super) fn new() -> Self {
        let corpora: [&[&str]; 3] = [
            &["the cat sat", "a dog ran fast", "the dog sat"],
            &["é ü 𝄞 naïve", "<unk> x y z", "x x y"],
            &["one"],
        ];
        let seeds = corpora
            .iter()
            .map(|lines| {
                let sentences: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l.split_whitespace().map(String::from).collect())
                    .collect();
                Seed {
                    bytes: Vocab::build(&sentences, None, 1).to_json_bytes(),
                    hot: Vec::new(),
                }
            })
            .collect();
        Self {
            mutator: Mutator::new(seeds, false),
        }
    }
}

impl Target for VocabTarget {
    fn name(&self) -> &'static str {
        "vocab"
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let i = rng.below(self.mutator.seeds.len());
        let mut bytes = json_input(rng, &self.mutator, i);
        // Most edited files get a checksum that matches their tokens, so the checks behind it run.
        if rng.chance(70)
            && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(tokens) = v.get("tokens").and_then(Value::as_array)
            && let Some(tokens) = tokens
                .iter()
                .map(|t| t.as_str().map(String::from))
                .collect::<Option<Vec<String>>>()
        {
            v["checksum"] = json!(emvae_text::vocab::checksum(&tokens));
            bytes = serde_json::to_vec(&v).unwrap_or(bytes);
        }
        Case { bytes, variant: 0 }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        Ok(Vocab::from_json_bytes(&case.bytes)
            .map(|v| {
                let words: Vec<String> = ["the", "x", "<eos>", "zzz"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let (ids, _) = v.encode(&words);
                std::hint::black_box(v.decode(&ids));
                std::hint::black_box(v.decode(&[0, 1, 2, 4, 99, u32::MAX]));
            })
            .map_err(|e| e.to_string()))
    }

    fn describe(&self, _: usize) -> String {
        "Vocab::from_json_bytes of a vocab.json".into()
    }
}

//! A generated corpus from a small grammar with two known, independent factors: sentiment and topic.
//!
//! The grammar is built so that the factors are what a sentence VAE's code naturally carries: nearly
//! all of a sentence's words are drawn for its factors, from short word lists, and the only neutral
//! choice is one intensifier. Each topic has its own sentence frame (its function words and word order
//! are topic-specific too) with a topic noun and venue; the sentiment opens the sentence, fills the
//! adjective (and in two frames a verb) and closes it with a fixed verdict ("never again" or "highly
//! recommended"), the same in every frame, so both factors run through the whole sentence, from its first
//! word to its last, and each shows the same way whatever the other is. About one sentence in ten repeats
//! an earlier one with its intensifier changed, so a model also meets near-duplicates.

use emvae_core::rng::{Rng, rng_for};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// Sentiment names by index.
pub const SENTIMENTS: [&str; 2] = ["neg", "pos"];
/// Topic names by index.
pub const TOPICS: [&str; 4] = ["food", "film", "travel", "sport"];

/// Probability that a sentence repeats an earlier one with one neutral word swapped.
const NEAR_DUPLICATE: f64 = 0.1;

/// One sentence frame per topic (indexed as [`TOPICS`]). Each opens with a sentiment word, names a topic
/// noun within its first six words, ends with the sentiment's verdict, and has one neutral slot (`{int}`).
const TEMPLATES: [&str; 4] = [
    "{sopen} , the {noun} at the {venue} tasted {int} {adj} , {verdict}",
    "{sopen} , i {sverb} the {noun} at the {venue} , {int} {adj} acting , {verdict}",
    "{sopen} , our {noun} by the {venue} was {int} {adj} , {verdict}",
    "{sopen} , we {sverb} the {noun} at the {venue} , {int} {adj} play , {verdict}",
];

const NOUNS: [[&str; 4]; 4] = [
    ["pasta", "soup", "pizza", "steak"],
    ["movie", "film", "sequel", "show"],
    ["hotel", "resort", "cabin", "villa"],
    ["match", "game", "race", "final"],
];
const VENUES: [[&str; 2]; 4] = [
    ["restaurant", "diner"],
    ["cinema", "theater"],
    ["beach", "lake"],
    ["stadium", "arena"],
];
const ADJECTIVES: [[&str; 4]; 2] = [
    ["awful", "terrible", "dreadful", "poor"],
    ["great", "wonderful", "amazing", "excellent"],
];
const SENTIMENT_VERBS: [[&str; 3]; 2] = [
    ["hated", "disliked", "regretted"],
    ["loved", "enjoyed", "adored"],
];
const SENTIMENT_OPENERS: [[&str; 2]; 2] = [["sadly", "unfortunately"], ["happily", "luckily"]];
/// The closing verdict: one fixed phrase per sentiment.
const VERDICTS: [[&str; 1]; 2] = [["never again"], ["highly recommended"]];
const INTENSIFIERS: [&str; 3] = ["really", "very", "truly"];

/// How many sentences to generate, from which seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrammarSpec {
    pub n_sentences: usize,
    pub seed: u64,
}

/// A generated sentence and its factors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedSentence {
    pub words: Vec<String>,
    /// Index into [`SENTIMENTS`] (0 neg, 1 pos).
    pub sentiment: usize,
    /// Index into [`TOPICS`].
    pub topic: usize,
}

/// Which factor [`to_lines`] writes as the label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelFactor {
    /// Plain sentences, no TAB.
    #[default]
    None,
    Sentiment,
    Topic,
    /// Both, as `sentiment-topic` (e.g. `pos-food`).
    Both,
}

impl GeneratedSentence {
    /// The label of this sentence for `factor` (`None` for [`LabelFactor::None`]).
    pub fn label(&self, factor: LabelFactor) -> Option<String> {
        let (s, t) = (SENTIMENTS[self.sentiment], TOPICS[self.topic]);
        match factor {
            LabelFactor::None => None,
            LabelFactor::Sentiment => Some(s.to_string()),
            LabelFactor::Topic => Some(t.to_string()),
            LabelFactor::Both => Some(format!("{s}-{t}")),
        }
    }
}

/// A template with its slots filled: the template index and one word (or phrase) per slot, in order.
#[derive(Clone)]
struct Draft {
    template: usize,
    fills: Vec<&'static str>,
    sentiment: usize,
    topic: usize,
}

/// Generates `spec.n_sentences` sentences with uniform, independent sentiment and topic; fixed by `spec.seed`.
pub fn generate(spec: &GrammarSpec) -> Vec<GeneratedSentence> {
    let mut rng = rng_for(spec.seed, b"grammar", 0);
    let mut drafts: Vec<Draft> = Vec::with_capacity(spec.n_sentences);
    for _ in 0..spec.n_sentences {
        let draft = if !drafts.is_empty() && rng.random_bool(NEAR_DUPLICATE) {
            let source = drafts[rng.random_range(0..drafts.len())].clone();
            swap_neutral(source, &mut rng)
        } else {
            fresh(rng.random_range(0..2), rng.random_range(0..4), &mut rng)
        };
        drafts.push(draft);
    }
    drafts.iter().map(render).collect()
}

/// Which grammar a generated corpus comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrammarKind {
    /// [`generate`]: review-like sentences whose factors run through every word.
    #[default]
    Reviews,
    /// [`generate_sparse_sentiment`]: the sentiment shows only in three words drawn from long lists.
    SparseSentiment,
}

/// Sentence openers of [`generate_sparse_sentiment`], per sentiment.
pub const SPARSE_OPENERS: [[&str; 8]; 2] = [
    [
        "sadly",
        "alas",
        "regrettably",
        "unfortunately",
        "honestly",
        "frankly",
        "bluntly",
        "sigh",
    ],
    [
        "happily",
        "luckily",
        "gladly",
        "thankfully",
        "wow",
        "truly",
        "joyfully",
        "finally",
    ],
];
/// Adjectives of [`generate_sparse_sentiment`], per sentiment.
pub const SPARSE_ADJECTIVES: [[&str; 16]; 2] = [
    [
        "awful", "terrible", "dreadful", "poor", "bland", "dull", "clumsy", "tedious", "stale",
        "weak", "messy", "boring", "grim", "sloppy", "lifeless", "cheap",
    ],
    [
        "great",
        "wonderful",
        "amazing",
        "excellent",
        "lovely",
        "superb",
        "charming",
        "brilliant",
        "fresh",
        "vivid",
        "elegant",
        "gripping",
        "warm",
        "stunning",
        "delightful",
        "clever",
    ],
];

/// Sentences `opener , the noun was adj and adj .` with a uniform sentiment and topic: the topic picks
/// the noun, the sentiment the opener and both adjectives, each from a long list, so that a few labelled
/// sentences meet only some of a sentiment's words and the others are linked to them only through the
/// unlabelled sentences they share with them. Fixed by `spec.seed`.
pub fn generate_sparse_sentiment(spec: &GrammarSpec) -> Vec<GeneratedSentence> {
    let mut rng = rng_for(spec.seed, b"sparse-sentiment", 0);
    (0..spec.n_sentences)
        .map(|_| {
            let (sentiment, topic) = (rng.random_range(0..2), rng.random_range(0..4));
            let adjectives = &SPARSE_ADJECTIVES[sentiment];
            let first = rng.random_range(0..adjectives.len());
            let second = (first + rng.random_range(1..adjectives.len())) % adjectives.len();
            let words = [
                SPARSE_OPENERS[sentiment][rng.random_range(0..8)],
                ",",
                "the",
                NOUNS[topic][rng.random_range(0..4)],
                "was",
                adjectives[first],
                "and",
                adjectives[second],
                ".",
            ];
            GeneratedSentence {
                words: words.iter().map(|w| w.to_string()).collect(),
                sentiment,
                topic,
            }
        })
        .collect()
}

/// The sentences of the grammar `kind`.
pub fn generate_kind(kind: GrammarKind, spec: &GrammarSpec) -> Vec<GeneratedSentence> {
    match kind {
        GrammarKind::Reviews => generate(spec),
        GrammarKind::SparseSentiment => generate_sparse_sentiment(spec),
    }
}

/// The corpus text of `sentences`, one per line, as `label<TAB>sentence` unless `label` is `None`.
pub fn to_lines(sentences: &[GeneratedSentence], label: LabelFactor) -> String {
    let mut out = String::new();
    for s in sentences {
        if let Some(l) = s.label(label) {
            out.push_str(&l);
            out.push('\t');
        }
        out.push_str(&s.words.join(" "));
        out.push('\n');
    }
    out
}

fn slots(template: usize) -> impl Iterator<Item = &'static str> {
    TEMPLATES[template]
        .split_whitespace()
        .filter_map(|p| p.strip_prefix('{')?.strip_suffix('}'))
}

/// The word list of a slot for the given factors, and whether the slot is neutral.
fn choices(slot: &str, sentiment: usize, topic: usize) -> (&'static [&'static str], bool) {
    match slot {
        "noun" => (&NOUNS[topic], false),
        "venue" => (&VENUES[topic], false),
        "adj" => (&ADJECTIVES[sentiment], false),
        "sverb" => (&SENTIMENT_VERBS[sentiment], false),
        "sopen" => (&SENTIMENT_OPENERS[sentiment], false),
        "verdict" => (&VERDICTS[sentiment], false),
        _ => (&INTENSIFIERS, true),
    }
}

fn pick(list: &[&'static str], rng: &mut Rng) -> &'static str {
    list[rng.random_range(0..list.len())]
}

fn fresh(sentiment: usize, topic: usize, rng: &mut Rng) -> Draft {
    let template = topic; // each topic has its own frame
    let fills = slots(template)
        .map(|slot| pick(choices(slot, sentiment, topic).0, rng))
        .collect();
    Draft {
        template,
        fills,
        sentiment,
        topic,
    }
}

/// `draft` with one of its neutral slots drawn again (every template has one).
fn swap_neutral(mut draft: Draft, rng: &mut Rng) -> Draft {
    let neutral: Vec<(usize, &'static [&'static str])> = slots(draft.template)
        .enumerate()
        .filter_map(|(i, slot)| {
            let (list, is_neutral) = choices(slot, draft.sentiment, draft.topic);
            is_neutral.then_some((i, list))
        })
        .collect();
    if !neutral.is_empty() {
        let (i, list) = neutral[rng.random_range(0..neutral.len())];
        draft.fills[i] = pick(list, rng);
    }
    draft
}

fn render(draft: &Draft) -> GeneratedSentence {
    let mut fills = draft.fills.iter();
    let mut words = Vec::new();
    for part in TEMPLATES[draft.template].split_whitespace() {
        let text = if part.starts_with('{') {
            fills.next().copied().unwrap_or_default()
        } else {
            part
        };
        words.extend(text.split_whitespace().map(String::from));
    }
    GeneratedSentence {
        words,
        sentiment: draft.sentiment,
        topic: draft.topic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn corpus(n: usize, seed: u64) -> Vec<GeneratedSentence> {
        generate(&GrammarSpec {
            n_sentences: n,
            seed,
        })
    }

    #[test]
    fn deterministic_from_seed() {
        assert_eq!(corpus(300, 5), corpus(300, 5));
        assert_ne!(corpus(300, 5), corpus(300, 6));
    }

    #[test]
    fn factors_are_balanced() {
        let n = 4000;
        let s = corpus(n, 1);
        for k in 0..2 {
            let c = s.iter().filter(|x| x.sentiment == k).count() as f64;
            assert!(
                (c - n as f64 / 2.0).abs() < 0.1 * n as f64 / 2.0,
                "sentiment {k}: {c}"
            );
        }
        for k in 0..4 {
            let c = s.iter().filter(|x| x.topic == k).count() as f64;
            assert!(
                (c - n as f64 / 4.0).abs() < 0.1 * n as f64 / 4.0,
                "topic {k}: {c}"
            );
        }
    }

    #[test]
    fn factors_recoverable_by_keywords() {
        let topic_words: Vec<HashSet<&str>> = (0..4)
            .map(|t| NOUNS[t].iter().chain(&VENUES[t]).copied().collect())
            .collect();
        let sentiment_words: Vec<HashSet<&str>> = (0..2)
            .map(|s| {
                ADJECTIVES[s]
                    .iter()
                    .chain(&SENTIMENT_OPENERS[s])
                    .chain(&VERDICTS[s])
                    .chain(&SENTIMENT_VERBS[s])
                    .flat_map(|p| p.split_whitespace())
                    .collect()
            })
            .collect();
        for s in corpus(2000, 2) {
            let hits = |sets: &[HashSet<&str>]| -> Vec<usize> {
                (0..sets.len())
                    .filter(|&k| s.words.iter().any(|w| sets[k].contains(w.as_str())))
                    .collect()
            };
            assert_eq!(hits(&topic_words), [s.topic], "{:?}", s.words);
            assert_eq!(hits(&sentiment_words), [s.sentiment], "{:?}", s.words);
            // Each factor shows in several slots, one of them within the first six words.
            let count = |set: &HashSet<&str>, words: &[String]| {
                words.iter().filter(|w| set.contains(w.as_str())).count()
            };
            assert!(count(&topic_words[s.topic], &s.words) >= 2, "{:?}", s.words);
            assert!(
                count(&sentiment_words[s.sentiment], &s.words) >= 4,
                "{:?}",
                s.words
            );
            assert!(
                count(&topic_words[s.topic], &s.words[..6]) >= 1,
                "{:?}",
                s.words
            );
            assert!(
                count(&sentiment_words[s.sentiment], &s.words[..1]) == 1,
                "{:?}",
                s.words
            );
        }
    }

    #[test]
    fn lengths_vocabulary_and_near_duplicates() {
        let s = corpus(3000, 3);
        let (lo, hi) = s.iter().fold((usize::MAX, 0), |(lo, hi), x| {
            (lo.min(x.words.len()), hi.max(x.words.len()))
        });
        assert!(lo >= 5 && hi <= 16, "lengths {lo}..={hi}");
        let vocab: HashSet<&str> = s
            .iter()
            .flat_map(|x| x.words.iter().map(String::as_str))
            .collect();
        assert!((55..=200).contains(&vocab.len()), "{} words", vocab.len());
        let distinct: HashSet<&Vec<String>> = s.iter().map(|x| &x.words).collect();
        assert!(distinct.len() < s.len(), "no repeated sentence at all");
    }

    #[test]
    fn lines_carry_the_chosen_label() {
        let s = corpus(3, 4);
        let both = to_lines(&s, LabelFactor::Both);
        let first = both.lines().next().unwrap_or_default();
        let label = format!("{}-{}\t", SENTIMENTS[s[0].sentiment], TOPICS[s[0].topic]);
        assert!(first.starts_with(&label), "{first}");
        assert!(!to_lines(&s, LabelFactor::None).contains('\t'));
        assert_eq!(to_lines(&s, LabelFactor::Topic).lines().count(), 3);
    }
}

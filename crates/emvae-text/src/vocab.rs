//! Token <-> id maps with four special tokens, saved as checksummed JSON.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::TextError;

/// Padding after the end of a sentence; never predicted.
pub const PAD: u32 = 0;
/// Any word outside the vocabulary (and the literal `<unk>` of corpora such as PTB).
pub const UNK: u32 = 1;
/// First decoder input of every sentence.
pub const BOS: u32 = 2;
/// Last target of every sentence.
pub const EOS: u32 = 3;

const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<bos>", "<eos>"];
const FORMAT: &str = "emvae.vocab.v1";

/// A vocabulary: ids 0..4 are the special tokens, then words by count (descending), then lexicographically.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    tokens: Vec<String>,
    counts: Vec<u64>,
    index: HashMap<String, u32>,
}

/// The JSON form.
#[derive(Serialize, Deserialize)]
struct VocabFile {
    format: String,
    checksum: String,
    tokens: Vec<String>,
    counts: Vec<u64>,
}

impl Vocab {
    /// Builds a vocabulary from tokenised sentences.
    ///
    /// Keeps words seen at least `min_count` times, most frequent first (ties in lexicographic order),
    /// up to `max_size` entries in all, the four specials included (so at least those four). The literal
    /// `<unk>` counts towards UNK; the other special spellings never become words. Counts: UNK holds the
    /// tokens that will map to it, EOS the number of sentences, PAD and BOS zero.
    pub fn build(sentences: &[Vec<String>], max_size: Option<usize>, min_count: usize) -> Vocab {
        let mut freq: HashMap<&str, u64> = HashMap::new();
        for word in sentences.iter().flatten() {
            *freq.entry(word.as_str()).or_default() += 1;
        }
        let mut unk = 0;
        let mut words: Vec<(&str, u64)> = Vec::with_capacity(freq.len());
        for (word, count) in freq {
            if SPECIALS.contains(&word) {
                unk += count;
            } else if count >= min_count as u64 {
                words.push((word, count));
            } else {
                unk += count;
            }
        }
        words.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let room = max_size.map_or(usize::MAX, |m| m.saturating_sub(SPECIALS.len()));
        unk += words.iter().skip(room).map(|w| w.1).sum::<u64>();
        words.truncate(room);

        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        let mut counts = vec![0, unk, 0, sentences.len() as u64];
        for (word, count) in words {
            tokens.push(word.to_string());
            counts.push(count);
        }
        Self::from_parts(tokens, counts)
    }

    fn from_parts(tokens: Vec<String>, counts: Vec<u64>) -> Vocab {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Vocab {
            tokens,
            counts,
            index,
        }
    }

    /// Number of entries, the specials included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: the specials are always there.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`, UNK when absent.
    pub fn id(&self, token: &str) -> u32 {
        self.index.get(token).copied().unwrap_or(UNK)
    }

    /// The token of `id` (`<unk>` for an id outside the vocabulary).
    pub fn token(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map_or(SPECIALS[UNK as usize], String::as_str)
    }

    /// All tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Corpus counts in id order (see [`Vocab::build`] for the specials).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Word ids of `words`, and the out-of-vocabulary words (mapped to UNK) in order.
    ///
    /// A literal `<unk>` is UNK and not reported; `<pad>`, `<bos>` and `<eos>` in text are not words
    /// (they would end or skip the sentence), so they map to UNK and are reported.
    pub fn encode(&self, words: &[String]) -> (Vec<u32>, Vec<String>) {
        let mut oov = Vec::new();
        let ids = words
            .iter()
            .map(|w| match self.index.get(w.as_str()) {
                Some(&id) if id == UNK || id > EOS => id,
                _ => {
                    oov.push(w.clone());
                    UNK
                }
            })
            .collect();
        (ids, oov)
    }

    /// The tokens of `ids` up to the first EOS, skipping PAD and BOS.
    pub fn decode(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .take_while(|&&id| id != EOS)
            .filter(|&&id| id != PAD && id != BOS)
            .map(|&id| self.token(id).to_string())
            .collect()
    }

    /// The checksum of the token list (`fnv1a64:` + 16 hex digits): which vocabulary a model was trained with.
    pub fn fingerprint(&self) -> String {
        checksum(&self.tokens)
    }

    /// The vocabulary as pretty-printed JSON (`format`, `checksum`, `tokens`, `counts`).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "format": FORMAT,
            "checksum": self.fingerprint(),
            "tokens": self.tokens,
            "counts": self.counts,
        });
        // `{:#}` pretty-prints and, unlike `to_vec_pretty`, cannot fail.
        format!("{value:#}\n").into_bytes()
    }

    /// Reads a vocabulary written by [`Vocab::to_json_bytes`], checking its format tag, specials and checksum.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Vocab, TextError> {
        let err = |m: String| TextError::Vocab(m);
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| err(format!("not a JSON vocabulary file ({e})")))?;
        // Check the tag first so a foreign JSON file gets a clear message rather than a missing field.
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(err(format!("format is \"{other}\", expected \"{FORMAT}\"")));
            }
            None => {
                return Err(err(format!(
                    "not an emvae vocabulary (no \"format\": \"{FORMAT}\" tag)"
                )));
            }
        }
        let file: VocabFile = serde_json::from_value(value)
            .map_err(|e| err(format!("malformed {FORMAT} file ({e})")))?;
        let actual = checksum(&file.tokens);
        if actual != file.checksum {
            return Err(err(format!(
                "checksum mismatch (file says {}, its tokens give {actual}): the file was damaged or edited",
                file.checksum
            )));
        }
        validate(&file)?;
        Ok(Self::from_parts(file.tokens, file.counts))
    }
}

/// Checks what the checksum cannot: the specials, duplicates, empty or split tokens, the counts' length.
fn validate(file: &VocabFile) -> Result<(), TextError> {
    let err = |m: String| Err(TextError::Vocab(m));
    if file.tokens.len() < SPECIALS.len() || file.tokens[..SPECIALS.len()] != SPECIALS {
        return err(format!("the first tokens must be {SPECIALS:?}"));
    }
    if file.counts.len() != file.tokens.len() {
        return err(format!(
            "{} counts for {} tokens",
            file.counts.len(),
            file.tokens.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in file.tokens.iter().enumerate() {
        if t.is_empty() || t.chars().any(char::is_whitespace) {
            return err(format!(
                "token {i} ({t:?}) is empty or contains white space"
            ));
        }
        if !seen.insert(t.as_str()) {
            return err(format!("token {t:?} appears twice"));
        }
    }
    Ok(())
}

/// FNV-1a 64 over the tokens, each followed by 0xFF (a byte UTF-8 never contains, so boundaries count):
/// the `checksum` field of `vocab.json`.
pub fn checksum(tokens: &[String]) -> String {
    let mut h = emvae_core::hash::Fnv64::default();
    for t in tokens {
        h.write(t.as_bytes());
        h.write(&[0xFF]);
    }
    format!("fnv1a64:{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sents(lines: &[&str]) -> Vec<Vec<String>> {
        lines
            .iter()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn specials_then_count_then_lexicographic() {
        let v = Vocab::build(&sents(&["b a c a", "c d b a", "<unk> e"]), None, 1);
        assert_eq!(v.tokens()[..4], SPECIALS);
        // a:3, b:2, c:2, d:1, e:1
        assert_eq!(v.tokens()[4..], ["a", "b", "c", "d", "e"]);
        assert_eq!(v.counts(), [0, 1, 0, 3, 3, 2, 2, 1, 1]);
        assert_eq!(v.len(), 9);
        assert_eq!((v.id("a"), v.id("<unk>"), v.id("zzz")), (4, UNK, UNK));
        assert_eq!(v.token(4), "a");
        assert_eq!(v.token(999), "<unk>");
    }

    #[test]
    fn build_is_deterministic() {
        let s = sents(&["x y z w v u t", "z y x", "q r s t u v"]);
        let a = Vocab::build(&s, None, 1);
        for _ in 0..5 {
            assert_eq!(Vocab::build(&s, None, 1), a);
        }
    }

    #[test]
    fn max_size_counts_specials_and_min_count_drops_rare() {
        let s = sents(&["a a a b b c", "a b c d"]);
        let v = Vocab::build(&s, Some(6), 1);
        assert_eq!(v.len(), 6);
        assert_eq!(v.tokens()[4..], ["a", "b"]);
        assert_eq!(v.counts()[UNK as usize], 3); // c c d
        let v = Vocab::build(&s, None, 2);
        assert_eq!(v.tokens()[4..], ["a", "b", "c"]);
        assert_eq!(Vocab::build(&s, Some(2), 1).len(), 4);
    }

    #[test]
    fn literal_unk_is_never_an_entry() {
        let v = Vocab::build(&sents(&["<unk> <unk> <unk> a", "<eos> a"]), None, 1);
        assert_eq!(v.len(), 5);
        let (ids, oov) = v.encode(&words("a <unk> b <eos>"));
        assert_eq!(ids, [4, UNK, UNK, UNK]);
        assert_eq!(oov, ["b", "<eos>"]);
    }

    #[test]
    fn decode_stops_at_eos_and_skips_pad_bos() {
        let v = Vocab::build(&sents(&["the cat sat"]), None, 1);
        let mut ids = vec![BOS];
        ids.extend(v.encode(&words("the cat")).0);
        ids.extend([PAD, v.id("sat"), EOS, v.id("cat")]);
        assert_eq!(v.decode(&ids), words("the cat sat"));
    }

    #[test]
    fn json_round_trip_and_fingerprint() {
        let v = Vocab::build(&sents(&["é ü a", "a b"]), None, 1);
        let back = Vocab::from_json_bytes(&v.to_json_bytes()).unwrap();
        assert_eq!(back, v);
        assert!(v.fingerprint().starts_with("fnv1a64:"));
        let other = Vocab::build(&sents(&["a b c"]), None, 1);
        assert_ne!(other.fingerprint(), v.fingerprint());
    }

    #[test]
    fn damaged_foreign_and_edited_files_are_rejected() {
        let v = Vocab::build(&sents(&["a b c"]), None, 1);
        let text = String::from_utf8(v.to_json_bytes()).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (text[..text.len() / 2].to_string(), "not a JSON"),
            ("{\"hello\": 1}".into(), "no \"format\""),
            (text.replace(FORMAT, "emvae.vocab.v9"), "format is"),
            (text.replace("\"b\"", "\"bb\""), "checksum mismatch"),
            (text.replace("\"tokens\"", "\"tokenz\""), "malformed"),
        ];
        for (bytes, needle) in cases {
            match Vocab::from_json_bytes(bytes.as_bytes()) {
                Err(TextError::Vocab(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
                other => panic!("expected a vocab error with {needle}, got {other:?}"),
            }
        }
    }

    #[test]
    fn consistent_but_invalid_files_are_rejected() {
        let file = |tokens: &[&str], counts: Vec<u64>| {
            let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
            serde_json::json!({"format": FORMAT, "checksum": checksum(&tokens), "tokens": tokens, "counts": counts})
                .to_string()
        };
        let specials = ["<pad>", "<unk>", "<bos>", "<eos>"];
        let cases = [
            (
                file(&["<unk>", "<pad>", "<bos>", "<eos>"], vec![0; 4]),
                "first tokens",
            ),
            (file(&specials, vec![0; 3]), "3 counts"),
            (
                file(&[&specials[..], &["a", "a"]].concat(), vec![0; 6]),
                "twice",
            ),
            (
                file(&[&specials[..], &["a b"]].concat(), vec![0; 5]),
                "white space",
            ),
        ];
        for (bytes, needle) in cases {
            match Vocab::from_json_bytes(bytes.as_bytes()) {
                Err(TextError::Vocab(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
                other => panic!("expected a vocab error with {needle}, got {other:?}"),
            }
        }
    }
}

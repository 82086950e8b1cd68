//! Reading and checking corpora: one sentence per line, white-space tokens, optionally `label<TAB>sentence`.

use std::path::{Path, PathBuf};

use emvae_core::config::InvalidParam;
use serde::{Deserialize, Serialize};

use crate::error::TextError;

/// What to do with a sentence longer than `max_length` words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Keep the first `max_length` words and count the sentence in [`Corpus::truncated`].
    #[default]
    Truncate,
    /// Fail, naming the line.
    Reject,
}

/// How to read a corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusOptions {
    /// Longest sentence in words (without `<eos>`); `None` for no limit.
    pub max_length: Option<usize>,
    pub overlong: Overlong,
}

/// A read corpus: its sentences, their labels when it is labelled, and what was skipped or cut.
#[derive(Clone, Debug, PartialEq)]
pub struct Corpus {
    pub path: PathBuf,
    pub sentences: Vec<Vec<String>>,
    /// Per sentence when any line has a TAB; `None` for a row written with an empty label (`\tsentence`).
    pub labels: Option<Vec<Option<String>>>,
    /// Sentences cut to `max_length` words.
    pub truncated: usize,
    /// Blank lines skipped.
    pub blank_lines: usize,
    /// 1-based file line of each sentence.
    pub line_numbers: Vec<usize>,
}

/// Reads the corpus at `path` (see [`parse_corpus`] for the rules).
pub fn read_corpus(path: &Path, opts: &CorpusOptions) -> Result<Corpus, TextError> {
    let bytes = std::fs::read(path).map_err(|source| TextError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_corpus(&bytes, path, opts)
}

/// The words of one sentence given as text (for example on a command line).
pub fn parse_sentence(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// Parses corpus `bytes`; `path` only names the file in errors.
///
/// Blank lines are skipped and counted; every other line must be UTF-8. If any line has a TAB the corpus is
/// labelled and every non-blank line must be `label<TAB>sentence` (an empty label marks an unlabelled row).
/// Lines over `max_length` words are cut or rejected as `opts.overlong` says.
pub fn parse_corpus(bytes: &[u8], path: &Path, opts: &CorpusOptions) -> Result<Corpus, TextError> {
    let fail = |line: Option<usize>, msg: String| TextError::corpus(path, line, msg);
    if opts.max_length == Some(0) {
        return Err(InvalidParam::new("max_length", "must be at least 1 word").into());
    }
    if bytes.is_empty() {
        return Err(fail(None, "is empty".into()));
    }
    let lines = decode_lines(bytes, path)?;
    let labelled_at: Vec<usize> = lines
        .iter()
        .filter(|(_, l)| l.contains('\t') && !l.trim().is_empty())
        .map(|(n, _)| *n)
        .collect();

    let mut corpus = Corpus {
        path: path.to_path_buf(),
        sentences: Vec::new(),
        labels: (!labelled_at.is_empty()).then(Vec::new),
        truncated: 0,
        blank_lines: 0,
        line_numbers: Vec::new(),
    };
    for (n, line) in lines {
        if line.trim().is_empty() {
            corpus.blank_lines += 1;
            continue;
        }
        let text = match (&mut corpus.labels, line.split_once('\t')) {
            (Some(labels), Some((label, text))) => {
                let label = label.trim();
                labels.push((!label.is_empty()).then(|| label.to_string()));
                text
            }
            (Some(_), None) => {
                return Err(fail(Some(n), missing_label(&labelled_at)));
            }
            (None, _) => line,
        };
        let mut words = parse_sentence(text);
        if words.is_empty() {
            return Err(fail(
                Some(n),
                "has a label but no sentence after the TAB".into(),
            ));
        }
        if let Some(max) = opts.max_length.filter(|&m| words.len() > m) {
            if opts.overlong == Overlong::Reject {
                return Err(fail(
                    Some(n),
                    format!(
                        "has {} words, more than max_length = {max} (raise max_length or set overlong = \"truncate\")",
                        words.len()
                    ),
                ));
            }
            words.truncate(max);
            corpus.truncated += 1;
        }
        corpus.sentences.push(words);
        corpus.line_numbers.push(n);
    }
    if corpus.sentences.is_empty() {
        return Err(fail(None, "has no sentences, only blank lines".into()));
    }
    Ok(corpus)
}

/// The lines of `bytes` with their 1-based numbers, each checked as UTF-8 on its own so errors name the line.
fn decode_lines<'a>(bytes: &'a [u8], path: &Path) -> Result<Vec<(usize, &'a str)>, TextError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // A final newline ends the last line rather than starting an empty one.
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            std::str::from_utf8(raw)
                .map(|s| (i + 1, s))
                .map_err(|_| TextError::corpus(path, Some(i + 1), "is not valid UTF-8 text"))
        })
        .collect()
}

/// The message for a line without `label<TAB>` in a labelled corpus, listing (a few of) the labelled lines.
fn missing_label(labelled_at: &[usize]) -> String {
    let shown: Vec<String> = labelled_at.iter().take(5).map(|n| n.to_string()).collect();
    let which = match labelled_at.len() {
        1 => format!("line {} has one", shown.join("")),
        n if n <= shown.len() => format!("lines {} have one", shown.join(", ")),
        n => format!(
            "lines {} and {} more have one",
            shown.join(", "),
            n - shown.len()
        ),
    };
    format!(
        "has no label, but {which} (label<TAB>sentence); in a labelled corpus every line needs a TAB, \
         with nothing before it for an unlabelled row"
    )
}

impl Corpus {
    /// Splits off the last `n_held_out` sentences as a held-out corpus.
    ///
    /// File-level counts (`truncated`, `blank_lines`) stay with the first part.
    pub fn split_last(mut self, n_held_out: usize) -> Result<(Corpus, Corpus), TextError> {
        let n = self.sentences.len();
        if n_held_out == 0 || n_held_out >= n {
            return Err(TextError::corpus(
                &self.path,
                None,
                format!(
                    "cannot hold out {n_held_out} of {n} sentences: both parts need at least one"
                ),
            ));
        }
        let at = n - n_held_out;
        let held = Corpus {
            path: self.path.clone(),
            sentences: self.sentences.split_off(at),
            labels: self.labels.as_mut().map(|l| l.split_off(at)),
            truncated: 0,
            blank_lines: 0,
            line_numbers: self.line_numbers.split_off(at),
        };
        Ok((self, held))
    }

    /// The distinct labels, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.labels.iter().flatten().flatten().cloned().collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    /// Whether there are no sentences (never for a parsed corpus).
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8], opts: CorpusOptions) -> Result<Corpus, TextError> {
        parse_corpus(text, Path::new("data/train.txt"), &opts)
    }

    fn ok(text: &str) -> Corpus {
        parse(text.as_bytes(), CorpusOptions::default()).unwrap()
    }

    #[test]
    fn plain_corpus_with_blank_lines_crlf_and_bom() {
        let c = ok("\u{feff}the cat  sat\r\n\n  \na <unk> dog\n");
        assert_eq!(
            c.sentences,
            [vec!["the", "cat", "sat"], vec!["a", "<unk>", "dog"]]
        );
        assert_eq!(c.line_numbers, [1, 4]);
        assert_eq!(c.blank_lines, 2);
        assert_eq!(c.labels, None);
        assert!(c.label_names().is_empty());
        // A TAB on an otherwise blank line does not make the corpus labelled.
        let c = ok("a b\n \t \nc\n");
        assert_eq!((c.labels, c.blank_lines), (None, 1));
    }

    #[test]
    fn labelled_and_partly_labelled() {
        let c = ok("pos\tgood film\n\tno label here\nneg\tbad  food\npos\tfine\n");
        assert_eq!(
            c.labels,
            Some(vec![
                Some("pos".into()),
                None,
                Some("neg".into()),
                Some("pos".into())
            ])
        );
        assert_eq!(c.sentences[1], ["no", "label", "here"]);
        assert_eq!(c.label_names(), ["neg", "pos"]);
    }

    #[test]
    fn truncation_is_counted() {
        let opts = CorpusOptions {
            max_length: Some(3),
            overlong: Overlong::Truncate,
        };
        let c = parse(b"a b c d e\na b\na b c\n", opts).unwrap();
        assert_eq!(c.sentences[0], ["a", "b", "c"]);
        assert_eq!(c.truncated, 1);
    }

    /// Each bad input, the line its error must name (None: the whole file) and a phrase of the message.
    #[test]
    fn error_table_names_file_and_line() {
        let reject = CorpusOptions {
            max_length: Some(3),
            overlong: Overlong::Reject,
        };
        let default = CorpusOptions::default();
        let cases: Vec<(&[u8], CorpusOptions, Option<usize>, &str)> = vec![
            (b"", default, None, "is empty"),
            (b"\n  \n\r\n", default, None, "only blank lines"),
            (
                b"good line\nok\nbad \xff\xfe here\n",
                default,
                Some(3),
                "UTF-8",
            ),
            (
                b"a b\n\na b c d\n",
                reject,
                Some(3),
                "has 4 words, more than max_length = 3",
            ),
            (
                b"pos\tgood\nno label\n",
                default,
                Some(2),
                "but line 1 has one",
            ),
            (
                b"no label\npos\tgood\nneg\tbad\n",
                default,
                Some(1),
                "but lines 2, 3 have one",
            ),
            (
                b"a\tb\na\tb\na\tb\na\tb\na\tb\na\tb\na\tb\nb\n",
                default,
                Some(8),
                "lines 1, 2, 3, 4, 5 and 2 more",
            ),
            (b"pos\tgood\nneg\t  \n", default, Some(2), "no sentence"),
        ];
        for (bytes, opts, line, needle) in cases {
            match parse(bytes, opts) {
                Err(e @ TextError::Corpus { line: l, .. }) => {
                    let msg = e.to_string();
                    assert_eq!(l, line, "{msg}");
                    assert!(msg.contains(needle), "{msg} lacks {needle}");
                    let at = line.map_or("data/train.txt: ".to_string(), |n| {
                        format!("data/train.txt:{n}: ")
                    });
                    assert!(msg.starts_with(&at), "{msg} does not start with {at}");
                    assert!(!msg.contains("byte"), "{msg}");
                }
                other => panic!("{needle}: expected a corpus error, got {other:?}"),
            }
        }
    }

    #[test]
    fn zero_max_length_is_invalid_and_missing_file_is_io() {
        let opts = CorpusOptions {
            max_length: Some(0),
            overlong: Overlong::Truncate,
        };
        assert!(
            matches!(parse(b"a\n", opts), Err(TextError::InvalidParam(p)) if p.key == "max_length")
        );
        let missing = read_corpus(
            Path::new("/nonexistent/emvae/corpus.txt"),
            &CorpusOptions::default(),
        );
        assert!(matches!(missing, Err(TextError::Io { .. })));
    }

    #[test]
    fn read_corpus_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("emvae-text-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.txt");
        std::fs::write(&path, "x y\nz\n").unwrap();
        let c = read_corpus(&path, &CorpusOptions::default()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.path, path);
    }

    #[test]
    fn split_last_keeps_order_and_rejects_empty_parts() {
        let c = ok("pos\ta\nneg\tb\n\tc\npos\td\n");
        let (train, held) = c.clone().split_last(1).unwrap();
        assert_eq!(train.sentences.len(), 3);
        assert_eq!(held.sentences, [vec!["d"]]);
        assert_eq!(held.labels, Some(vec![Some("pos".into())]));
        assert_eq!(held.line_numbers, [4]);
        assert!(c.clone().split_last(0).is_err());
        assert!(c.split_last(4).is_err());
    }

    #[test]
    fn overlong_serde_is_snake_case() {
        assert_eq!(
            serde_json::to_string(&Overlong::Reject).unwrap(),
            "\"reject\""
        );
        let o: Overlong = serde_json::from_str("\"truncate\"").unwrap();
        assert_eq!(o, Overlong::Truncate);
    }

    #[test]
    fn sentence_from_text() {
        assert_eq!(parse_sentence("  the  cat\tsat "), ["the", "cat", "sat"]);
    }
}

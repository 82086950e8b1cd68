//! CSV (and other delimited text) reader.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, Matrix};

/// Field separator of a delimited text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Delimiter {
    /// The most frequent of `,` `\t` `;` `|` on the first line; runs of blanks when none occurs.
    #[default]
    Auto,
    Char(u8),
    /// Runs of spaces and tabs (as in `np.loadtxt`).
    Whitespace,
}

impl TryFrom<String> for Delimiter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "whitespace" => Ok(Self::Whitespace),
            "tab" | "\t" => Ok(Self::Char(b'\t')),
            _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "#" => {
                Ok(Self::Char(s.as_bytes()[0]))
            }
            _ => Err(format!(
                "invalid delimiter `{s}`: expected \"auto\", \"whitespace\", \"tab\" or one ASCII character such as \",\" or \";\""
            )),
        }
    }
}

impl From<Delimiter> for String {
    fn from(d: Delimiter) -> String {
        match d {
            Delimiter::Auto => "auto".into(),
            Delimiter::Whitespace => "whitespace".into(),
            Delimiter::Char(b'\t') => "tab".into(),
            Delimiter::Char(c) => (c as char).to_string(),
        }
    }
}

/// Whether the first row is a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "HeaderRepr", into = "HeaderRepr")]
pub enum HeaderMode {
    /// A header when every cell of the first row is non-numeric.
    #[default]
    Auto,
    Present,
    Absent,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum HeaderRepr {
    Flag(bool),
    Word(String),
}

impl TryFrom<HeaderRepr> for HeaderMode {
    type Error = String;
    fn try_from(r: HeaderRepr) -> Result<Self, String> {
        match r {
            HeaderRepr::Flag(true) => Ok(Self::Present),
            HeaderRepr::Flag(false) => Ok(Self::Absent),
            HeaderRepr::Word(w) if w == "auto" => Ok(Self::Auto),
            HeaderRepr::Word(w) => Err(format!(
                "invalid header `{w}`: expected true, false or \"auto\""
            )),
        }
    }
}

impl From<HeaderMode> for HeaderRepr {
    fn from(h: HeaderMode) -> Self {
        match h {
            HeaderMode::Auto => HeaderRepr::Word("auto".into()),
            HeaderMode::Present => HeaderRepr::Flag(true),
            HeaderMode::Absent => HeaderRepr::Flag(false),
        }
    }
}

/// A column, by header name or by 0-based position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnRef {
    Index(usize),
    Name(String),
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnRef::Index(i) => write!(f, "{i}"),
            ColumnRef::Name(n) => write!(f, "`{n}`"),
        }
    }
}

/// How to read a delimited text file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    pub delimiter: Delimiter,
    pub header: HeaderMode,
    /// Feature columns; all columns but the label column when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<ColumnRef>>,
    /// Column holding a known component / class per row; empty, `NA`, `?` or a negative number mean
    /// "unknown" (partly labelled data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<ColumnRef>,
    /// Read the file without labels when it lacks the label column (a name not in the header, an index
    /// past its last column) instead of failing: evaluating a model on new, unlabelled rows.
    #[serde(skip)]
    pub optional_label: bool,
}

/// Reads delimited text (already decompressed) into a [`Dataset`].
pub fn read_csv(path: &Path, bytes: &[u8], opts: &CsvOptions) -> Result<Dataset, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| not_utf8(path, bytes, e.valid_up_to()))?;
    let delimiter = match opts.delimiter {
        Delimiter::Auto => detect_delimiter(text),
        d => d,
    };
    let mut reader = RowReader::new(path, opts)?;
    match delimiter {
        Delimiter::Whitespace | Delimiter::Auto => {
            for (i, line) in text.lines().enumerate() {
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let fields: Vec<&str> = trimmed.split_whitespace().collect();
                reader.row(i + 1, &fields)?;
            }
        }
        Delimiter::Char(c) => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(c)
                .trim(csv::Trim::All)
                .comment(Some(b'#'))
                .from_reader(text.as_bytes());
            let mut record = csv::StringRecord::new();
            loop {
                match rdr.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map_or(0, |p| p.line() as usize);
                        // A line holding only blanks is not a row.
                        if record.len() == 1 && record[0].is_empty() {
                            continue;
                        }
                        let fields: Vec<&str> = record.iter().collect();
                        reader.row(line, &fields)?;
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line() as usize);
                        return Err(
                            DataError::new(path, format!("malformed CSV: {e}")).at_line(line)
                        );
                    }
                }
            }
        }
    }
    reader.finish()
}

/// The error for a file that is not UTF-8 at byte `at`: its line, and the character of that line.
fn not_utf8(path: &Path, bytes: &[u8], at: usize) -> DataError {
    let before = &bytes[..at];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    // The bytes before `at` are valid UTF-8, so characters can be counted.
    let character = 1 + std::str::from_utf8(&before[line_start..]).map_or(0, |t| t.chars().count());
    DataError::new(
        path,
        format!(
            "not UTF-8 text: byte 0x{:02X} at character {character} of the line; convert the file to UTF-8 \
             (e.g. iconv -f latin1 -t utf-8), or if it is a binary file set data.format",
            bytes[at]
        ),
    )
    .at_line(line)
}

fn detect_delimiter(text: &str) -> Delimiter {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let best = [b',', b'\t', b';', b'|']
        .into_iter()
        .map(|c| (first.bytes().filter(|&b| b == c).count(), c))
        .max_by_key(|&(n, _)| n);
    match best {
        Some((n, c)) if n > 0 => Delimiter::Char(c),
        _ => Delimiter::Whitespace,
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

fn is_missing_label(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("na") || s.eq_ignore_ascii_case("nan") || s == "?"
}

/// The first name (not empty) that repeats an earlier one, as `(earlier, later)` positions. One pass
/// with a map: comparing each name with all before it grew with the square of the width (3.6 s for
/// 60,000 columns, over 10 s for a 1 MiB header of 140,000).
fn first_duplicate(names: &[String]) -> Option<(usize, usize)> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
        if let Some(&first) = seen.get(name.as_str()) {
            return Some((first, i));
        }
        seen.insert(name, i);
    }
    None
}

/// Builds the data set row by row, so large files are never held as strings.
struct RowReader<'a> {
    path: &'a Path,
    opts: &'a CsvOptions,
    /// Set once the first row is seen.
    layout: Option<Layout>,
    values: Vec<f64>,
    labels: Vec<Option<usize>>,
    row_lines: Vec<usize>,
    n_rows: usize,
    header_line: Option<usize>,
}

struct Layout {
    n_fields: usize,
    features: Vec<usize>,
    label: Option<usize>,
    names: Option<Vec<String>>,
}

impl<'a> RowReader<'a> {
    fn new(path: &'a Path, opts: &'a CsvOptions) -> Result<Self, DataError> {
        Ok(Self {
            path,
            opts,
            layout: None,
            values: Vec::new(),
            labels: Vec::new(),
            row_lines: Vec::new(),
            n_rows: 0,
            header_line: None,
        })
    }

    fn err(&self, line: usize, message: impl Into<String>) -> DataError {
        DataError::new(self.path, message).at_line(line)
    }

    fn row(&mut self, line: usize, fields: &[&str]) -> Result<(), DataError> {
        if self.layout.is_none() {
            return self.first_row(line, fields);
        }
        self.data_row(line, fields)
    }

    fn first_row(&mut self, line: usize, fields: &[&str]) -> Result<(), DataError> {
        let label_by_index = match &self.opts.label_column {
            Some(ColumnRef::Index(i)) => Some(*i),
            _ => None,
        };
        let needs_names = (matches!(self.opts.label_column, Some(ColumnRef::Name(_)))
            && !self.opts.optional_label)
            || self
                .opts
                .columns
                .iter()
                .flatten()
                .any(|c| matches!(c, ColumnRef::Name(_)));
        let considered: Vec<&str> = fields
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != label_by_index)
            .map(|(_, f)| *f)
            .collect();
        let numeric = considered
            .iter()
            .filter(|f| parse_number(f).is_some())
            .count();
        let is_header = match self.opts.header {
            super::HeaderMode::Present => true,
            super::HeaderMode::Absent => false,
            super::HeaderMode::Auto => {
                if numeric == 0 && !considered.is_empty() {
                    true
                } else if numeric == considered.len() {
                    false
                } else {
                    return Err(self.err(
                        line,
                        format!(
                            "the first row mixes numbers and text ({numeric} of {} cells are numbers): if it is a header, \
                             set `data.header = true`; otherwise fix the non-numeric cells",
                            considered.len()
                        ),
                    ));
                }
            }
        };
        if needs_names && !is_header {
            return Err(self.err(
                line,
                "columns are named in the config but the file has no header row (name them by 0-based index instead)",
            ));
        }
        let names: Option<Vec<String>> =
            is_header.then(|| fields.iter().map(|f| f.to_string()).collect());
        // A duplicated name would make a lookup by name pick one of the columns silently. Empty names
        // (unnamed columns) cannot be looked up, so they may repeat.
        if let Some(ns) = &names
            && let Some((first, second)) = first_duplicate(ns)
        {
            return Err(self.err(
                line,
                format!(
                    "columns {first} and {second} (0-based) are both named `{}`: column names must be unique; \
                     rename one of them in the header",
                    ns[second]
                ),
            ));
        }
        let resolve = |c: &ColumnRef, what: &str| -> Result<usize, DataError> {
            match c {
                ColumnRef::Index(i) if *i < fields.len() => Ok(*i),
                ColumnRef::Index(i) => Err(self.err(
                    line,
                    format!(
                        "{what} {i} is out of range: the file has {} columns (0-based)",
                        fields.len()
                    ),
                )),
                ColumnRef::Name(n) => names
                    .as_ref()
                    .and_then(|ns| ns.iter().position(|x| x == n))
                    .ok_or_else(|| {
                        self.err(
                            line,
                            format!(
                                "{what} `{n}` is not in the header (columns: {})",
                                names.as_ref().map(|ns| ns.join(", ")).unwrap_or_default()
                            ),
                        )
                    }),
            }
        };
        let label_absent = |c: &ColumnRef| match c {
            ColumnRef::Index(i) => *i >= fields.len(),
            ColumnRef::Name(n) => names.as_ref().is_none_or(|ns| !ns.contains(n)),
        };
        let label = self
            .opts
            .label_column
            .as_ref()
            .filter(|c| !(self.opts.optional_label && label_absent(c)))
            .map(|c| resolve(c, "label column"))
            .transpose()?;
        let features: Vec<usize> = match &self.opts.columns {
            Some(cols) => cols
                .iter()
                .map(|c| resolve(c, "column"))
                .collect::<Result<_, _>>()?,
            None => (0..fields.len()).filter(|&i| Some(i) != label).collect(),
        };
        if features.is_empty() {
            return Err(self.err(line, "no feature columns to read"));
        }
        self.layout = Some(Layout {
            n_fields: fields.len(),
            features,
            label,
            names,
        });
        if is_header {
            self.header_line = Some(line);
            Ok(())
        } else {
            self.data_row(line, fields)
        }
    }

    fn data_row(&mut self, line: usize, fields: &[&str]) -> Result<(), DataError> {
        let layout = self
            .layout
            .as_ref()
            .expect("layout is set by the first row");
        if fields.len() != layout.n_fields {
            return Err(self.err(
                line,
                format!(
                    "ragged row: expected {} fields (as on the first row), found {}",
                    layout.n_fields,
                    fields.len()
                ),
            ));
        }
        for &c in &layout.features {
            let cell = fields[c];
            let v = match parse_number(cell) {
                Some(v) => v,
                None if cell.is_empty() => {
                    return Err(self
                        .err(line, "empty cell: missing values are not supported")
                        .at_column(c + 1));
                }
                None => {
                    return Err(self
                        .err(line, format!("cannot read `{cell}` as a number"))
                        .at_column(c + 1));
                }
            };
            if !v.is_finite() {
                return Err(self
                    .err(
                        line,
                        format!(
                            "`{cell}` is not a finite number (NaN and infinities are not data)"
                        ),
                    )
                    .at_column(c + 1));
            }
            self.values.push(v);
        }
        if let Some(c) = layout.label {
            let cell = fields[c];
            let label = if is_missing_label(cell) {
                None
            } else {
                match parse_number(cell).map(super::parse_label_value) {
                    Some(Ok(l)) => l,
                    Some(Err(msg)) => return Err(self.err(line, msg).at_column(c + 1)),
                    None => {
                        return Err(self
                            .err(
                                line,
                                format!("label `{cell}` is not an integer (use empty, NA or -1 for unknown)"),
                            )
                            .at_column(c + 1));
                    }
                }
            };
            self.labels.push(label);
        }
        self.row_lines.push(line);
        self.n_rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<Dataset, DataError> {
        let Some(layout) = self.layout else {
            return Err(DataError::new(self.path, "the file is empty: no rows"));
        };
        if self.n_rows == 0 {
            let mut e = DataError::new(self.path, "the file has a header but no data rows");
            e.line = self.header_line;
            return Err(e);
        }
        let n_cols = layout.features.len();
        let column_names = layout
            .names
            .map(|ns| layout.features.iter().map(|&i| ns[i].clone()).collect());
        Ok(Dataset {
            x: Matrix::new(self.n_rows, n_cols, self.values),
            labels: layout.label.map(|_| self.labels),
            column_names,
            source: self.path.to_path_buf(),
            row_lines: Some(self.row_lines),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, opts: &CsvOptions) -> Result<Dataset, DataError> {
        read_csv(Path::new("t.csv"), text.as_bytes(), opts)
    }

    #[test]
    fn header_and_delimiters_are_detected() {
        let d = read("a,b\n1,2\n3,4\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.x.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(d.column_names, Some(vec!["a".into(), "b".into()]));
        let d = read("1;2\n3;4\n\n", &CsvOptions::default()).unwrap();
        assert_eq!((d.x.n_rows, d.x.n_cols), (2, 2));
        let d = read("# comment\n1 2  3\n4\t5 6\n", &CsvOptions::default()).unwrap();
        assert_eq!((d.x.n_rows, d.x.n_cols), (2, 3));
        let d = read("1\t2\n3\t4\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.x.n_cols, 2);
    }

    #[test]
    fn labels_are_read_with_unknowns() {
        let opts = CsvOptions {
            label_column: Some(ColumnRef::Name("z".into())),
            ..Default::default()
        };
        let d = read("x,z,y\n1,0,2\n3,,4\n5,NA,6\n7,-1,8\n9,2,1\n", &opts).unwrap();
        assert_eq!(d.x.n_cols, 2);
        assert_eq!(d.labels, Some(vec![Some(0), None, None, None, Some(2)]));
        assert_eq!(d.x.row(4), &[9.0, 1.0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let o = CsvOptions::default();
        let e = read("1,2\n3,4\n5\n", &o).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("ragged"), "{e}");
        let e = read("1,2\n3,x\n", &o).unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(2)));
        let e = read("1,2\n3,nan\n", &o).unwrap_err();
        assert!(e.message.contains("finite"), "{e}");
        let e = read("1,2\ninf,4\n", &o).unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(1)));
        let e = read("", &o).unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = read("a,b\n", &o).unwrap_err();
        assert!(e.message.contains("no data rows"), "{e}");
        let e = read("1,b\n2,3\n", &o).unwrap_err();
        assert!(e.message.contains("header"), "{e}");
        let e = read("1,2\n3,\n", &o).unwrap_err();
        assert!(e.message.contains("empty cell"), "{e}");
        assert_eq!(
            e.to_string(),
            "t.csv:2: column 2: empty cell: missing values are not supported"
        );
    }

    #[test]
    fn duplicated_header_names_are_errors_naming_both_columns() {
        let o = CsvOptions::default();
        let e = read("x,y,x\n1,2,3\n", &o).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(
            e.message
                .contains("columns 0 and 2 (0-based) are both named `x`"),
            "{e}"
        );
        // Also when the duplicate is the one a config picks by name.
        let by_name = CsvOptions {
            label_column: Some(ColumnRef::Name("z".into())),
            ..Default::default()
        };
        let e = read("a,z,b,z\n1,0,2,1\n", &by_name).unwrap_err();
        assert!(e.message.contains("columns 1 and 3"), "{e}");
        // Unnamed columns cannot be looked up, so they may repeat.
        let d = read(",,x\n1,2,3\n", &o);
        assert!(d.is_ok(), "{d:?}");
    }

    /// `emvae bench fuzz` found that a header of many columns took quadratic time (each name compared
    /// with every name before it): a 1 MiB header of 140,000 names ran for over 10 s.
    #[test]
    fn a_wide_header_is_read_in_linear_time() {
        let n = 200_000;
        let header: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let row: Vec<String> = (0..n).map(|i| (i % 10).to_string()).collect();
        let text = format!("{}\n{}\n", header.join(","), row.join(","));
        let start = std::time::Instant::now();
        let d = read(&text, &CsvOptions::default()).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!((d.x.n_rows, d.x.n_cols), (1, n));
        // Linear: well under a second; quadratic: about 40 s.
        assert!(seconds < 10.0, "{seconds} s for {n} columns");
        // A repeat is still found, with both positions.
        let text = format!("{},c7\n{},1\n", header.join(","), row.join(","));
        let e = read(&text, &CsvOptions::default()).unwrap_err();
        assert!(
            e.message.contains(&format!("columns 7 and {n} (0-based)")),
            "{e}"
        );
    }

    #[test]
    fn non_utf8_text_names_line_and_character() {
        // 0xE9 is a Latin-1 e-acute, not UTF-8.
        let bytes = b"x,y\n1,2\n3,4\xE9\n";
        let e = read_csv(Path::new("t.csv"), bytes, &CsvOptions::default()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("byte 0xE9 at character 4"), "{e}");
        assert!(e.message.contains("UTF-8"), "{e}");
        assert!(!e.message.contains("offset"), "{e}");
    }

    #[test]
    fn an_optional_label_column_may_be_absent() {
        for label in [ColumnRef::Name("label".into()), ColumnRef::Index(2)] {
            let required = CsvOptions {
                label_column: Some(label.clone()),
                ..Default::default()
            };
            let optional = CsvOptions {
                optional_label: true,
                ..required.clone()
            };
            // Absent: an error when required, unlabelled rows when optional.
            let text = if matches!(label, ColumnRef::Name(_)) {
                "x,y\n1,2\n3,4\n"
            } else {
                "1,2\n3,4\n"
            };
            assert!(read(text, &required).is_err(), "{label}");
            let d = read(text, &optional).unwrap();
            assert_eq!((d.x.n_cols, d.labels), (2, None), "{label}");
            // Present: used as before.
            let text = if matches!(label, ColumnRef::Name(_)) {
                "x,y,label\n1,2,0\n3,4,\n"
            } else {
                "1,2,0\n3,4,-1\n"
            };
            let d = read(text, &optional).unwrap();
            assert_eq!(d.x.values, vec![1.0, 2.0, 3.0, 4.0], "{label}");
            assert_eq!(d.labels, Some(vec![Some(0), None]), "{label}");
        }
        // A headerless file with a named, optional label column is read unlabelled.
        let optional = CsvOptions {
            label_column: Some(ColumnRef::Name("label".into())),
            optional_label: true,
            ..Default::default()
        };
        assert_eq!(read("1,2\n3,4\n", &optional).unwrap().labels, None);
    }

    #[test]
    fn options_deserialise() {
        let o: CsvOptions =
            toml::from_str("delimiter = \"tab\"\nheader = false\nlabel_column = 3\n").unwrap();
        assert_eq!(o.delimiter, Delimiter::Char(b'\t'));
        assert_eq!(o.header, HeaderMode::Absent);
        assert_eq!(o.label_column, Some(ColumnRef::Index(3)));
        assert!(toml::from_str::<CsvOptions>("delimiter = \"ab\"").is_err());
    }
}

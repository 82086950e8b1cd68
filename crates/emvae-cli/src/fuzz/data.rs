//! The CSV, NPY and IDX targets: their seeds, structured generators, and stored gzip members.

use std::path::{Path, PathBuf};

use emvae_core::data::{
    self, ColumnRef, CsvOptions, Dataset, Delimiter, Format, HeaderMode, Matrix,
};

use super::mutate::{BIG, Mutator, Rng, Seed};
use super::{Case, Target, Verdict, write_scratch};
use crate::error::CliResult;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum DataFormat {
    Csv,
    Npy,
    Idx,
}

/// The CSV, NPY and IDX readers: in memory, through `data::load` on a file (gzipped or not), and (NPY,
/// IDX) as a label file.
pub(super) struct DataTarget {
    format: DataFormat,
    mutator: Mutator,
    /// The file of the path-based variants (its name announces the format).
    path: PathBuf,
}

/// Variants of the CSV target: the reader's options.
const CSV_VARIANTS: usize = 10;

fn csv_options(variant: usize) -> CsvOptions {
    let mut o = CsvOptions::default();
    match variant {
        1 => o.header = HeaderMode::Present,
        2 => o.header = HeaderMode::Absent,
        3 => o.label_column = Some(ColumnRef::Index(0)),
        4 => o.label_column = Some(ColumnRef::Name("label".into())),
        5 => {
            o.header = HeaderMode::Present;
            o.columns = Some(vec![ColumnRef::Index(0), ColumnRef::Name("y".into())]);
        }
        6 => {
            o.delimiter = Delimiter::Whitespace;
            o.label_column = Some(ColumnRef::Index(2));
        }
        7 => o.delimiter = Delimiter::Char(b';'),
        8 => {
            o.label_column = Some(ColumnRef::Name("label".into()));
            o.optional_label = true;
        }
        _ => {}
    }
    o
}

impl DataTarget {
    pub(super) fn new(format: DataFormat, scratch: &Path) -> Self {
        let (seeds, binary, name) = match format {
            DataFormat::Csv => (csv_seeds(), false, "data.csv"),
            DataFormat::Npy => (npy_seeds(), true, "data.npy"),
            DataFormat::Idx => (idx_seeds(), true, "data-idx3-ubyte"),
        };
        Self {
            format,
            mutator: Mutator::new(seeds, binary),
            path: scratch.join(name),
        }
    }

    /// Whether `variant` reads through a file (whose bytes may be gzipped).
    fn through_file(&self, variant: usize) -> bool {
        match self.format {
            DataFormat::Csv => variant == CSV_VARIANTS - 1,
            _ => variant > 0,
        }
    }
}

impl Target for DataTarget {
    fn name(&self) -> &'static str {
        match self.format {
            DataFormat::Csv => "csv",
            DataFormat::Npy => "npy",
            DataFormat::Idx => "idx",
        }
    }

    fn generate(&self, rng: &mut Rng) -> Case {
        let variant = match self.format {
            DataFormat::Csv => rng.below(CSV_VARIANTS),
            _ => [0, 0, 0, 0, 1, 1, 2][rng.below(7)],
        };
        let structured = rng.chance(if self.format == DataFormat::Csv {
            25
        } else {
            35
        });
        let mut bytes = match (structured, self.format) {
            (true, DataFormat::Csv) => csv_structured(rng),
            (true, DataFormat::Npy) => npy_structured(rng),
            (true, DataFormat::Idx) => idx_structured(rng),
            (false, _) => self.mutator.input(rng).0,
        };
        if structured && rng.chance(30) {
            self.mutator.mutate(rng, &mut bytes, &[]);
        }
        if self.through_file(variant) && rng.chance(50) {
            bytes = gzip_stored(&bytes);
            if rng.chance(25) {
                let hot = [4, 10, bytes.len().saturating_sub(4)];
                self.mutator.mutate(rng, &mut bytes, &hot);
            }
        }
        Case { bytes, variant }
    }

    fn run(&mut self, case: &Case) -> CliResult<Verdict> {
        let name = Path::new("fuzz-input");
        let matrix = if self.through_file(case.variant) {
            write_scratch(&self.path, &case.bytes)?;
            let labels = self.format != DataFormat::Csv && case.variant == 2;
            if labels {
                return Ok(data::load_labels(&self.path, Format::Auto)
                    .map(|l| {
                        std::hint::black_box(l.iter().flatten().sum::<usize>());
                    })
                    .map_err(|e| e.to_string()));
            }
            data::load(&self.path, Format::Auto, &CsvOptions::default()).map(|d| d.x)
        } else {
            match self.format {
                DataFormat::Csv => data::read_csv(name, &case.bytes, &csv_options(case.variant))
                    .map(|d| {
                        use_dataset(&d);
                        d.x
                    }),
                DataFormat::Npy => data::read_npy(name, &case.bytes),
                DataFormat::Idx => data::read_idx(name, &case.bytes),
            }
        };
        Ok(matrix.map(|m| use_matrix(&m)).map_err(|e| e.to_string()))
    }

    fn describe(&self, variant: usize) -> String {
        match (self.format, variant) {
            (DataFormat::Csv, v) if v == CSV_VARIANTS - 1 => {
                "data::load of a .csv file, gzipped or not".into()
            }
            (DataFormat::Csv, v) => format!("read_csv with {:?}", csv_options(v)),
            (f, 0) => format!(
                "read_{} in memory",
                if f == DataFormat::Npy { "npy" } else { "idx" }
            ),
            (_, 1) => format!(
                "data::load of {}, gzipped or not",
                self.path.file_name().unwrap_or_default().to_string_lossy()
            ),
            _ => format!(
                "data::load_labels of {}, gzipped or not",
                self.path.file_name().unwrap_or_default().to_string_lossy()
            ),
        }
    }
}

/// Reads every row of an accepted matrix, as a command would.
fn use_matrix(m: &Matrix) {
    let mut sum = 0.0;
    for r in m.rows() {
        sum += r.iter().sum::<f64>();
    }
    if m.n_rows > 0 {
        sum += m.row(m.n_rows - 1).iter().sum::<f64>();
    }
    std::hint::black_box(sum);
}

fn use_dataset(d: &Dataset) {
    if let Some(labels) = &d.labels {
        std::hint::black_box(labels.len() == d.n_rows());
    }
    if let Some(i) = d.n_rows().checked_sub(1) {
        std::hint::black_box(d.row_error(i, "x"));
    }
}

fn csv_seeds() -> Vec<Seed> {
    [
        "x,y,label\n1,2,0\n3,4,1\n5.5,-6e-3,\n",
        "a,b\n1,2\n3,4\n",
        "1 2 3\n4 5 6\n",
        "# comment\n1\t2\n3\t4\n\n",
        "a;b;c\n1;2;3\n4;5;6\n",
        "\"a\",\"b\"\n\"1\",\"2\"\n\"3\",\"4\"\n",
        "x,label,y\r\n0.5,NA,1\r\n1.5,?,2\r\n2.5,-1,3\r\n",
        "1e5|2E-3\n-0|+7\n",
        "label\n0\n1\n2\n",
        "x,y\n1,2\n3\n",
        "x y label\n1 2 0\n3 4 1\n",
        "\u{feff}x,y\n1,2\n",
    ]
    .into_iter()
    .map(Seed::text)
    .collect()
}

/// A generated delimited file: a header or not, rows of numbers and odd cells; now and then very wide
/// (tens of thousands of uniquely named columns).
fn csv_structured(rng: &mut Rng) -> Vec<u8> {
    const CELLS: &[&str] = &[
        "1",
        "-2.5",
        "1e5",
        "0",
        "nan",
        "inf",
        "",
        "NA",
        "?",
        "x",
        "1e999",
        "-0",
        "-1",
        "3",
        "0.5",
        "18446744073709551615",
        "4294967296",
        "\"1\"",
        "\"a,b\"",
        " 7 ",
    ];
    const NAMES: &[&str] = &["x", "y", "label", "", "a b", "\"q\"", "é"];
    let wide = rng.chance(1);
    let cols = if wide {
        rng.range(1_000, 150_000)
    } else {
        rng.range(1, 12)
    };
    let rows = if wide {
        rng.range(1, 2)
    } else {
        rng.range(0, 6)
    };
    let delimiter = *rng.pick(&[",", ",", "\t", ";", "|", " ", "  "]);
    let newline = if rng.chance(20) { "\r\n" } else { "\n" };
    let mut out = String::new();
    if rng.chance(60) {
        let names: Vec<String> = (0..cols)
            .map(|i| match rng.below(10) {
                0 if !wide => rng.pick(NAMES).to_string(),
                _ => format!("c{i}"),
            })
            .collect();
        out.push_str(&names.join(delimiter));
        out.push_str(newline);
    }
    for _ in 0..rows {
        let n = if rng.chance(90) {
            cols
        } else {
            rng.range(1, cols + 1)
        };
        let cells: Vec<String> = (0..n)
            .map(|_| match rng.below(4) {
                0 => rng.pick(CELLS).to_string(),
                _ => format!("{}", (rng.next() % 1000) as f64 / 8.0 - 50.0),
            })
            .collect();
        out.push_str(&cells.join(delimiter));
        out.push_str(newline);
    }
    out.into_bytes()
}

/// A version-`version` `.npy` file.
fn npy_file(descr: &str, shape: &str, fortran: bool, data: &[u8], version: u8) -> Seed {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let preamble = if version == 1 { 10 } else { 12 };
    while (preamble + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend_from_slice(&[version, 0]);
    if version == 1 {
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    bytes.extend_from_slice(header.as_bytes());
    // The shape's numbers, where large dimensions are written.
    let shape_at = bytes
        .windows(8)
        .position(|w| w == b"'shape':")
        .map_or(preamble, |p| p + 10);
    bytes.extend_from_slice(data);
    Seed {
        bytes,
        hot: vec![6, 8, shape_at],
    }
}

fn npy_seeds() -> Vec<Seed> {
    let f8: Vec<u8> = (1..=6).flat_map(|v| (v as f64).to_le_bytes()).collect();
    let f4: Vec<u8> = [0.5f32, -1.0, 2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let i4: Vec<u8> = [1i32, -2, 3, 4]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    vec![
        npy_file("<f8", "(2, 3)", false, &f8, 1),
        npy_file("<f4", "(3,)", false, &f4, 1),
        npy_file("|u1", "(2, 2, 2)", false, &[0, 1, 2, 3, 4, 5, 6, 255], 1),
        npy_file(">i4", "(2, 2)", true, &i4, 1),
        npy_file("<i8", "(1, 1)", false, &7i64.to_le_bytes(), 2),
        npy_file("|b1", "(4,)", false, &[0, 1, 1, 0], 3),
        npy_file("<u2", "(2, 1)", false, &[1, 0, 2, 0], 1),
        npy_file("<f8", "()", false, &2.5f64.to_le_bytes(), 1),
        npy_file("<f8", "(3, 2)", true, &f8, 1),
    ]
}

/// A generated `.npy` file: any dtype (numeric, not, not ASCII), any shape (huge, zero, not numbers),
/// any version and header length, data of the size the header implies or not.
fn npy_structured(rng: &mut Rng) -> Vec<u8> {
    #[rustfmt::skip]
    const DESCRS: &[&str] = &[
        "<f8", "<f4", ">f8", ">f4", "|u1", "|i1", "<i2", ">i2", "<i4", "<i8", "<u2", "<u4", "<u8",
        "|b1", "=f8", "<f2", "<c8", "<U8", "|O", "f8", "<f", "<", "", "é8", "<é", "\u{e9}",
        "<f18446744073709551615", "<f0", "<i16", "<u1\u{301}", ">é4",
    ];
    let descr = *rng.pick(DESCRS);
    let ndim = rng.below(5);
    let dims: Vec<String> = (0..ndim)
        .map(|_| match rng.below(6) {
            0..=2 => rng.below(5).to_string(),
            3 | 4 => rng.pick(BIG).to_string(),
            _ => rng
                .pick(&["-1", "18446744073709551616", "1.5", "x", "", " 2", "1e3"])
                .to_string(),
        })
        .collect();
    let shape = match ndim {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let fortran = *rng.pick(&["False", "True", "0", "", "Tru"]);
    let header = match rng.below(6) {
        0 => format!("{{'shape': {shape}, 'descr': '{descr}', 'fortran_order': {fortran}}}"),
        1 => format!("{{'descr': '{descr}', 'shape': {shape}}}"),
        2 => format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}"),
        _ => format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"),
    };
    let version = *rng.pick(&[1u8, 1, 1, 2, 3, 0, 4]);
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let len = if rng.chance(85) {
        header.len() as u64
    } else {
        *rng.pick(BIG)
    };
    if version == 1 || (version != 2 && version != 3 && rng.chance(50)) {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    let elem: usize = descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let count = dims
        .iter()
        .map(|d| d.trim().parse::<usize>().unwrap_or(1))
        .try_fold(1usize, |a, d| a.checked_mul(d))
        .filter(|&c| c.saturating_mul(elem) <= 4096);
    let size = match count {
        Some(c) if rng.chance(80) => {
            (c * elem.min(16)).saturating_add_signed(rng.below(3) as isize - 1)
        }
        _ => rng.below(64),
    };
    out.extend((0..size).map(|_| rng.next() as u8));
    out
}

fn idx_file(code: u8, dims: &[u32], data: &[u8]) -> Seed {
    let mut bytes = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    Seed {
        bytes,
        hot: vec![2, 3, 4, 8, 12, 16],
    }
}

fn idx_seeds() -> Vec<Seed> {
    let f4: Vec<u8> = [0.5f32, 1.5].iter().flat_map(|v| v.to_be_bytes()).collect();
    vec![
        idx_file(0x08, &[2, 2], &[0, 1, 2, 3]),
        idx_file(0x08, &[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 255]),
        idx_file(0x08, &[3], &[1, 2, 3]),
        idx_file(0x09, &[2], &[0xFF, 5]),
        idx_file(0x0B, &[2], &[0, 1, 0xFF, 0xFE]),
        idx_file(0x0C, &[1, 2], &[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF]),
        idx_file(0x0D, &[2], &f4),
        idx_file(0x0E, &[1], &1.25f64.to_be_bytes()),
    ]
}

/// A generated IDX file: any type code, rank and dimensions (zero, huge), data of the implied size or
/// not.
fn idx_structured(rng: &mut Rng) -> Vec<u8> {
    let code = *rng.pick(&[0x08u8, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]);
    let ndim = *rng.pick(&[1usize, 1, 2, 2, 3, 4, 0, 5, 255]);
    let dims: Vec<u32> = (0..ndim.min(8))
        .map(|_| match rng.below(5) {
            0..=2 => rng.below(5) as u32,
            _ => *rng.pick(BIG) as u32,
        })
        .collect();
    let mut out = vec![0, 0, code, ndim as u8];
    for d in &dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    let elem = match code {
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        _ => 1,
    };
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d as usize))
        .filter(|&c| c <= 4096);
    let size = match count {
        Some(c) if rng.chance(80) => (c * elem).saturating_add_signed(rng.below(3) as isize - 1),
        _ => rng.below(64),
    };
    out.extend((0..size).map(|_| rng.next() as u8));
    out
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    let mut blocks = data.chunks(0xFFFF).peekable();
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::super::Scratch;
    use super::*;

    #[test]
    fn stored_gzip_is_read_back() {
        let dir = Scratch::new().unwrap();
        let path = dir.path().join("x.csv.gz");
        std::fs::write(&path, gzip_stored(b"a,b\n1,2\n")).unwrap();
        let d = data::load(&path, Format::Auto, &CsvOptions::default()).unwrap();
        assert_eq!(d.x.values, vec![1.0, 2.0]);
    }

    #[test]
    fn inputs_are_deterministic() {
        let t = DataTarget::new(DataFormat::Npy, Path::new("."));
        let a = t.generate(&mut Rng::new(5)).bytes;
        assert_eq!(a, t.generate(&mut Rng::new(5)).bytes);
    }
}

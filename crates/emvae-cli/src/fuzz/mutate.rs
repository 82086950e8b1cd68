//! Random inputs: the xorshift generator, the token tables, seeds and the byte-level `Mutator`.

use super::MAX_LEN;

/// xorshift64* seeded through splitmix64.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers that break parsers and size computations.
#[rustfmt::skip]
pub(super) const NUMBERS: &[&str] = &[
    "0", "-0", "1", "-1", "2", "3", "0.5", "-0.0", "1e999", "-1e999", "1e-999", "nan", "NaN",
    "-nan", "inf", "-inf", "+inf", "18446744073709551615", "18446744073709551616",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "4294967295",
    "4294967296", "65535", "65536", "1e308", "5e-324", "99999999999999999999999999999",
    "1.7976931348623157e308", "0x10", "1_0", "+1", ".5", "5.", "1e", "--1",
];

/// Tokens of the text formats (TOML, JSON, CSV, the NPY header), and bytes that are not UTF-8.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"[", b"]", b"{", b"}", b"[[", b"]]", b"[]", b"{}", b"[[]]", b"(", b")", b"()", b"\"", b"'",
    b"''", b"\"\"", b"=", b"\n", b"\r\n", b"\r", b",", b";", b":", b"#", b"\t", b" ", b"|", b".",
    b"\\", b"\\u0000", b"\\ud800", b"\xFF", b"\x00", b"\xC3", b"\xE9", b"\xC3\xA9",
    b"\xF0\x9D\x84\x9E", b"\xE2\x80\xA8", b"true", b"false", b"True", b"False", b"null",
    b"1979-05-27T07:32:00Z", b"'descr'", b"'shape'", b"'fortran_order'", b"\"format\"",
    b"\"tokens\"", b"<pad>", b"<unk>",
];

/// Openings of nested values.
const NESTING: &[&[u8]] = &[b"[", b"{", b"(", b"[[", b"{\"a\":", b"{a=", b"[{", b"a=["];

/// Single bytes worth writing.
#[rustfmt::skip]
const BYTES: &[u8] = &[
    0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, b'0', b'1', b'9', b'-', b'+', b'.', b'e', b'E', b',',
    b'\n', b'\r', b'"', b'\'', b'[', b']', b'{', b'}', b'(', b')', b'=', b' ', b'\t', b'#', b':',
    b'\\',
];

/// Integers written over length, size and dimension fields.
#[rustfmt::skip]
pub(super) const BIG: &[u64] = &[
    0, 1, 2, 3, 4, 7, 8, 16, 255, 256, 0x7FFF, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000,
    0xFFFF_FFFF, 1 << 32, (1 << 32) + 1, 1 << 40, 1 << 48, 1 << 56, 1 << 62, i64::MAX as u64,
    1 << 63, u64::MAX - 7, u64::MAX - 1, u64::MAX,
];

const PRINTABLE: &[u8] = b"abcxyz0123456789 ,.;:=-+eE[]{}()\"'#\n\t_<>|/";

/// A valid file of a format and the offsets of its length and size fields.
#[derive(Clone)]
pub(super) struct Seed {
    pub(super) bytes: Vec<u8>,
    pub(super) hot: Vec<usize>,
}

impl Seed {
    pub(super) fn text(s: impl Into<String>) -> Self {
        Self {
            bytes: s.into().into_bytes(),
            hot: Vec::new(),
        }
    }
}

/// Edits of bytes, shared by all targets.
pub(super) struct Mutator {
    pub(super) seeds: Vec<Seed>,
    /// Binary formats: integers written over fields more often.
    binary: bool,
}

impl Mutator {
    pub(super) fn new(seeds: Vec<Seed>, binary: bool) -> Self {
        Self { seeds, binary }
    }

    /// Seed `i` edited (one input in twenty fully random instead).
    pub(super) fn mutated(&self, rng: &mut Rng, i: usize) -> Vec<u8> {
        if rng.chance(5) {
            return random_bytes(rng);
        }
        let seed = &self.seeds[i];
        let mut bytes = seed.bytes.clone();
        self.mutate(rng, &mut bytes, &seed.hot);
        bytes
    }

    /// A random seed, edited.
    pub(super) fn input(&self, rng: &mut Rng) -> (Vec<u8>, usize) {
        let i = rng.below(self.seeds.len());
        (self.mutated(rng, i), i)
    }

    /// One to eight edits of `bytes`.
    pub(super) fn mutate(&self, rng: &mut Rng, bytes: &mut Vec<u8>, hot: &[usize]) {
        let n = 1 + if rng.chance(70) {
            rng.below(3)
        } else {
            rng.below(8)
        };
        for _ in 0..n {
            self.edit(rng, bytes, hot);
            bytes.truncate(MAX_LEN);
        }
    }

    fn edit(&self, rng: &mut Rng, b: &mut Vec<u8>, hot: &[usize]) {
        let op = if self.binary && rng.chance(30) {
            10
        } else {
            rng.below(13)
        };
        match op {
            0 => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] = if rng.chance(50) {
                        *rng.pick(BYTES)
                    } else {
                        rng.next() as u8
                    };
                }
            }
            2 => {
                let (s, e) = span(rng, b.len());
                b.drain(s..e);
            }
            3 => {
                let (s, e) = span(rng, b.len());
                let chunk = b[s..e].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            4 => {
                // A range repeated: long lines, many rows, many columns.
                let (s, e) = span(rng, b.len());
                let chunk = b[s..e].to_vec();
                let most = if rng.chance(90) { 16 } else { 4096 };
                let times = 1 + rng.below(most);
                let mut repeated = Vec::new();
                for _ in 0..times {
                    if repeated.len() + chunk.len() + b.len() > MAX_LEN {
                        break;
                    }
                    repeated.extend_from_slice(&chunk);
                }
                b.splice(e..e, repeated);
            }
            5 => {
                let at = rng.below(b.len() + 1);
                let n = 1 + rng.below(16);
                let fresh: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, fresh);
            }
            6 if rng.chance(3) => {
                // Deep nesting: parsers that recurse without a limit overflow the stack.
                let at = rng.below(b.len() + 1);
                let open = *rng.pick(NESTING);
                let depth = 1 + rng.below(100_000);
                let nested: Vec<u8> = open.repeat(depth).into_iter().take(MAX_LEN).collect();
                b.splice(at..at, nested);
            }
            6 => {
                let at = rng.below(b.len() + 1);
                let token: &[u8] = if rng.chance(40) {
                    rng.pick(NUMBERS).as_bytes()
                } else {
                    rng.pick::<&[u8]>(TOKENS)
                };
                b.splice(at..at, token.iter().copied());
            }
            7 => replace_word(rng, b),
            8 => b.truncate(rng.below(b.len() + 1)),
            9 => {
                let other = &self.seeds[rng.below(self.seeds.len())].bytes;
                let cut = rng.below(b.len() + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            10 => write_integer(rng, b, hot),
            11 => replace_number(rng, b),
            _ => {
                // A range moved elsewhere.
                let (s, e) = span(rng, b.len());
                let chunk: Vec<u8> = b.drain(s..e).collect();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
        }
    }
}

/// Fully random input: any bytes, or printable text with tokens.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(16),
        1 | 2 => rng.below(256),
        _ => rng.below(4096),
    };
    if rng.chance(50) {
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        if rng.chance(15) {
            out.extend_from_slice(rng.pick::<&[u8]>(TOKENS));
        } else if rng.chance(5) {
            out.extend_from_slice(rng.pick(NUMBERS).as_bytes());
        } else {
            out.push(*rng.pick(PRINTABLE));
        }
    }
    out
}

/// A non-empty range of `0..len`, most often short (empty when `len` is 0).
fn span(rng: &mut Rng, len: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let max = *rng.pick(&[1, 4, 16, 64, 1024]);
    let n = 1 + rng.below(max.min(len));
    let s = rng.below(len - n + 1);
    (s, s + n)
}

/// Writes an interesting integer (1 to 8 bytes, either byte order) at a length field, in the header,
/// or anywhere; past the end, the input grows to hold it.
fn write_integer(rng: &mut Rng, b: &mut Vec<u8>, hot: &[usize]) {
    let width = *rng.pick(&[1usize, 2, 4, 4, 8, 8]);
    let value = match rng.below(10) {
        0..=6 => *rng.pick(BIG),
        7 => (b.len() as u64)
            .wrapping_add(rng.below(5) as u64)
            .wrapping_sub(2),
        8 => rng.next(),
        _ => rng.next() % 1024,
    };
    let mut field = value.to_le_bytes()[..width].to_vec();
    if rng.chance(40) {
        field.reverse();
    }
    let at = match rng.below(10) {
        0..=4 if !hot.is_empty() => *rng.pick(hot),
        0..=6 => rng.below(b.len().min(32) + 1),
        _ => rng.below(b.len() + 1),
    };
    if at + width > b.len() {
        b.resize(at + width, 0);
    }
    b[at..at + width].copy_from_slice(&field);
}

/// Replaces a word (a run of letters, digits and `_.+-`) by a token or a number.
fn replace_word(rng: &mut Rng, b: &mut Vec<u8>) {
    let runs = runs_of(b, |c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c));
    let token: Vec<u8> = if rng.chance(50) {
        rng.pick(NUMBERS).as_bytes().to_vec()
    } else {
        rng.pick(TOKENS).to_vec()
    };
    if runs.is_empty() {
        b.extend_from_slice(&token);
    } else {
        let (s, e) = *rng.pick(&runs);
        b.splice(s..e, token);
    }
}

/// Replaces a number (a run of digits with its sign, point and exponent) by an interesting one.
fn replace_number(rng: &mut Rng, b: &mut Vec<u8>) {
    let runs: Vec<(usize, usize)> = runs_of(b, |c| c.is_ascii_digit() || b"+-.eE".contains(&c))
        .into_iter()
        .filter(|&(s, e)| b[s..e].iter().any(u8::is_ascii_digit))
        .collect();
    let number = rng.pick(NUMBERS).as_bytes().to_vec();
    if runs.is_empty() {
        let at = rng.below(b.len() + 1);
        b.splice(at..at, number);
    } else {
        let (s, e) = *rng.pick(&runs);
        b.splice(s..e, number);
    }
}

/// Maximal runs of bytes satisfying `f`, as ranges.
fn runs_of(b: &[u8], f: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &c) in b.iter().enumerate() {
        match (f(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, b.len()));
    }
    runs
}

//! Pre-tokenization: cutting text into the chunks that BPE merges never cross.
//!
//! A `Splitter` is built from a split regex. For the GPT-4 pattern (and nanochat's variant of it,
//! which only changes how many digits a number chunk may hold) the chunks are found by a hand-written
//! scanner that walks the text once, with no backtracking; any other pattern is run with
//! `fancy-regex`. The scanner is written to give exactly the regex's chunks: the character classes it
//! uses (`\p{L}`, `\p{N}`, `\s`, the case-insensitive contraction letters) are read out of
//! `regex-syntax`, the same Unicode tables the regex engine uses, and the tests compare the two on
//! fuzzed text.
//!
//! The GPT-4 pattern, alternative by alternative (the regex tries them in this order at each
//! position and keeps the first that matches):
//!
//! ```text
//! 1. '(?i:[sdmt]|ll|ve|re)        an English contraction: 's, 'll, 'VE, ...
//! 2. [^\r\n\p{L}\p{N}]?+\p{L}+    a run of letters, optionally led by one other character
//!                                 (a space, usually) that is not a line break, letter or digit
//! 3. \p{N}{1,3}                   up to three digits (nanochat: up to two)
//! 4.  ?[^\s\p{L}\p{N}]++[\r\n]*   punctuation/symbols, optionally led by a space, then line breaks
//! 5. \s*[\r\n]                    whitespace up to and including its last line break
//! 6. \s+(?!\S)                    whitespace not followed by a non-space (so the last space of a
//!                                 run is left to lead the next word)
//! 7. \s+                          any other whitespace
//! ```
//!
//! Every character is matched by one of them, so the chunks tile the text.

use std::sync::OnceLock;

use fancy_regex::Regex;

/// The GPT-4 split pattern (cl100k_base), the default when no pattern is given.
pub const GPT4_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

const GPT4_HEAD: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,";
const GPT4_TAIL: &str = r"}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// How a pattern is applied.
pub enum Splitter {
    /// The hand-written scanner for the GPT-4 pattern family; `max_digits` is the `n` of `\p{N}{1,n}`.
    Gpt4 { max_digits: usize },
    /// Any other pattern, run by fancy-regex.
    Regex(Box<Regex>),
}

impl Splitter {
    /// Compile `pattern`. The scanner is used when the pattern is exactly the GPT-4 pattern with some
    /// digit count, unless `force_regex` is set (used by the tests to get the regex's answer).
    pub fn new(pattern: &str, force_regex: bool) -> Result<Splitter, String> {
        // Always compile the regex: an invalid pattern must fail the same way on either path.
        let regex = Regex::new(pattern).map_err(|e| format!("invalid split pattern {pattern:?}: {e}"))?;
        if !force_regex {
            if let Some(max_digits) = gpt4_family_digits(pattern) {
                tables(); // build the class tables now, not inside a worker thread
                return Ok(Splitter::Gpt4 { max_digits });
            }
        }
        Ok(Splitter::Regex(Box::new(regex)))
    }

    /// True when the hand-written scanner is in use.
    pub fn is_fast(&self) -> bool {
        matches!(self, Splitter::Gpt4 { .. })
    }

    /// Call `emit(start, end)` with the byte span of every chunk of `text`, in order.
    #[inline]
    pub fn for_each_span(&self, text: &str, mut emit: impl FnMut(usize, usize)) -> Result<(), String> {
        match self {
            Splitter::Gpt4 { max_digits } => {
                let bytes = text.as_bytes();
                let t = tables();
                let mut i = 0;
                while i < bytes.len() {
                    let end = gpt4_chunk_end(t, bytes, i, *max_digits);
                    emit(i, end);
                    i = end;
                }
                Ok(())
            }
            Splitter::Regex(re) => {
                for m in re.find_iter(text) {
                    let m = m.map_err(|e| format!("split pattern failed on the text: {e}"))?;
                    emit(m.start(), m.end());
                }
                Ok(())
            }
        }
    }

    /// Call `emit` with every chunk of `text`, in order.
    pub fn for_each_chunk<'t>(&self, text: &'t str, mut emit: impl FnMut(&'t str)) -> Result<(), String> {
        // SAFETY: spans are on character boundaries (the scanner stops only at the start of a
        // character; regex matches are on boundaries).
        self.for_each_span(text, |s, e| emit(unsafe { text.get_unchecked(s..e) }))
    }

    /// Cut `text` into pieces of roughly `target` bytes at places where no chunk can straddle the cut,
    /// so the pieces can be split in parallel and give the same chunks as the whole text. Only the
    /// scanner's pattern family has known safe places (a line break followed by an ASCII letter: no
    /// alternative can match across it, and the chunk ending at the line break does not depend on
    /// what follows); for other patterns the text is one piece.
    pub fn pieces<'t>(&self, text: &'t str, target: usize) -> Vec<&'t str> {
        let mut out = Vec::new();
        if !self.is_fast() || text.len() <= target {
            out.push(text);
            return out;
        }
        let bytes = text.as_bytes();
        let mut start = 0;
        while bytes.len() - start > target {
            let mut cut = None;
            let mut from = start + target;
            while let Some(off) = memchr::memchr(b'\n', &bytes[from..]) {
                let p = from + off + 1;
                if p < bytes.len() && bytes[p].is_ascii_alphabetic() {
                    cut = Some(p);
                    break;
                }
                from = p;
                if from >= bytes.len() {
                    break;
                }
            }
            match cut {
                Some(p) => {
                    out.push(&text[start..p]);
                    start = p;
                }
                None => break,
            }
        }
        out.push(&text[start..]);
        out
    }
}

/// If `pattern` is the GPT-4 pattern with `\p{N}{1,n}` for some n >= 1, return n.
fn gpt4_family_digits(pattern: &str) -> Option<usize> {
    let rest = pattern.strip_prefix(GPT4_HEAD)?;
    let digits = rest.strip_suffix(GPT4_TAIL)?;
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (n >= 1).then_some(n)
}

// ---------------------------------------------------------------------------------------------
// Character classes

/// A letter (`\p{L}`).
const LETTER: u8 = 0;
/// A number (`\p{N}`).
const NUMBER: u8 = 1;
/// `\r` or `\n`.
const NEWLINE: u8 = 2;
/// Whitespace (`\s`) other than `\r` and `\n`.
const SPACE: u8 = 3;
/// Everything else: `[^\s\p{L}\p{N}]` (punctuation, symbols, marks, controls).
const OTHER: u8 = 4;

/// Class of every code point (a two-stage table: 256-code-point blocks, identical blocks shared),
/// plus the characters that `(?i:x)` accepts for each contraction letter.
pub struct Tables {
    ascii: [u8; 128],
    block_of: Vec<u16>,
    blocks: Vec<[u8; 256]>,
    /// Bit k set: the code point folds to the k-th letter of `FOLD_LETTERS`.
    folds: Vec<(u32, u8)>,
}

const FOLD_LETTERS: [char; 8] = ['s', 'd', 'm', 't', 'l', 'v', 'r', 'e'];
const F_S: u8 = 1;
const F_D: u8 = 2;
const F_M: u8 = 4;
const F_T: u8 = 8;
const F_L: u8 = 16;
const F_V: u8 = 32;
const F_R: u8 = 64;
const F_E: u8 = 128;

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new().parse(pattern).expect("class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0).expect("literal is UTF-8");
            s.chars().map(|c| (c as u32, c as u32)).collect()
        }
        other => panic!("unexpected HIR for {pattern}: {other:?}"),
    }
}

/// The class tables, built once from regex-syntax's Unicode data.
pub fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        const N: usize = 0x110000;
        let mut class = vec![OTHER; N];
        for (lo, hi) in class_ranges(r"\s") {
            for c in lo..=hi {
                class[c as usize] = SPACE;
            }
        }
        class['\r' as usize] = NEWLINE;
        class['\n' as usize] = NEWLINE;
        for (lo, hi) in class_ranges(r"\p{N}") {
            for c in lo..=hi {
                class[c as usize] = NUMBER;
            }
        }
        for (lo, hi) in class_ranges(r"\p{L}") {
            for c in lo..=hi {
                class[c as usize] = LETTER;
            }
        }
        let mut ascii = [OTHER; 128];
        ascii.copy_from_slice(&class[..128]);
        let mut blocks: Vec<[u8; 256]> = Vec::new();
        let mut index: std::collections::HashMap<[u8; 256], u16> = std::collections::HashMap::new();
        let mut block_of = Vec::with_capacity(N / 256);
        for chunk in class.chunks_exact(256) {
            let mut b = [0u8; 256];
            b.copy_from_slice(chunk);
            let id = *index.entry(b).or_insert_with(|| {
                blocks.push(b);
                (blocks.len() - 1) as u16
            });
            block_of.push(id);
        }
        let mut folds: std::collections::BTreeMap<u32, u8> = Default::default();
        for (k, letter) in FOLD_LETTERS.iter().enumerate() {
            for (lo, hi) in class_ranges(&format!("(?i:{letter})")) {
                for c in lo..=hi {
                    *folds.entry(c).or_default() |= 1 << k;
                }
            }
        }
        Tables { ascii, block_of, blocks, folds: folds.into_iter().collect() }
    })
}

impl Tables {
    #[inline(always)]
    fn class_of(&self, cp: u32) -> u8 {
        if cp < 128 {
            self.ascii[cp as usize]
        } else {
            self.blocks[self.block_of[(cp >> 8) as usize] as usize][(cp & 0xff) as usize]
        }
    }

    #[inline]
    fn fold(&self, cp: u32) -> u8 {
        match self.folds.binary_search_by_key(&cp, |&(c, _)| c) {
            Ok(i) => self.folds[i].1,
            Err(_) => 0,
        }
    }
}

/// Decode the UTF-8 character starting at `i` (which must be a boundary) -> (code point, byte length).
#[inline(always)]
fn decode(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (b[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) << 12) | ((b[i + 1] as u32 & 0x3F) << 6) | (b[i + 2] as u32 & 0x3F), 3)
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((b[i + 1] as u32 & 0x3F) << 12)
                | ((b[i + 2] as u32 & 0x3F) << 6)
                | (b[i + 3] as u32 & 0x3F),
            4,
        )
    }
}

/// (code point, class, byte length) of the character at `i`.
#[inline(always)]
fn char_at(t: &Tables, b: &[u8], i: usize) -> (u32, u8, usize) {
    let b0 = b[i];
    if b0 < 0x80 {
        (b0 as u32, t.ascii[b0 as usize], 1)
    } else {
        let (cp, len) = decode(b, i);
        (cp, t.class_of(cp), len)
    }
}

#[inline(always)]
fn class_at(t: &Tables, b: &[u8], i: usize) -> u8 {
    let b0 = b[i];
    if b0 < 0x80 {
        t.ascii[b0 as usize]
    } else {
        t.class_of(decode(b, i).0)
    }
}

/// End of the run of characters of class `class` starting at `i`.
#[inline(always)]
fn run_end(t: &Tables, b: &[u8], mut i: usize, class: u8) -> usize {
    while i < b.len() {
        let b0 = b[i];
        if b0 < 0x80 {
            if t.ascii[b0 as usize] != class {
                break;
            }
            i += 1;
        } else {
            let (cp, len) = decode(b, i);
            if t.class_of(cp) != class {
                break;
            }
            i += len;
        }
    }
    i
}

/// End (exclusive byte offset) of the chunk that starts at `i` under the GPT-4 pattern.
#[inline]
fn gpt4_chunk_end(t: &Tables, b: &[u8], i: usize, max_digits: usize) -> usize {
    let n = b.len();
    let (c0, class0, len0) = char_at(t, b, i);
    let j = i + len0;

    // 1. '(?i:[sdmt]|ll|ve|re)
    if c0 == '\'' as u32 && j < n {
        let (c1, _, len1) = char_at(t, b, j);
        let f1 = t.fold(c1);
        if f1 & (F_S | F_D | F_M | F_T) != 0 {
            return j + len1;
        }
        if f1 & (F_L | F_V | F_R) != 0 && j + len1 < n {
            let (c2, _, len2) = char_at(t, b, j + len1);
            let f2 = t.fold(c2);
            if (f1 & F_L != 0 && f2 & F_L != 0) || (f1 & (F_V | F_R) != 0 && f2 & F_E != 0) {
                return j + len1 + len2;
            }
        }
    }

    // 2. [^\r\n\p{L}\p{N}]?+\p{L}+
    if class0 == LETTER {
        return run_end(t, b, j, LETTER);
    }
    if (class0 == OTHER || class0 == SPACE) && j < n && class_at(t, b, j) == LETTER {
        return run_end(t, b, j, LETTER);
    }

    // 3. \p{N}{1,max_digits}
    if class0 == NUMBER {
        let mut end = j;
        let mut count = 1;
        while count < max_digits && end < n {
            let (_, c, len) = char_at(t, b, end);
            if c != NUMBER {
                break;
            }
            end += len;
            count += 1;
        }
        return end;
    }

    // 4. ' ?[^\s\p{L}\p{N}]++[\r\n]*'
    let symbols_from = if class0 == OTHER {
        Some(j)
    } else if c0 == ' ' as u32 && j < n && class_at(t, b, j) == OTHER {
        Some(j + char_at(t, b, j).2)
    } else {
        None
    };
    if let Some(from) = symbols_from {
        let mut end = run_end(t, b, from, OTHER);
        while end < n && (b[end] == b'\r' || b[end] == b'\n') {
            end += 1;
        }
        return end;
    }

    // Only whitespace is left (class0 is SPACE or NEWLINE). Find the whole whitespace run.
    let mut end = i;
    let mut last_newline_end = 0;
    let mut last_char_start = i;
    let mut chars = 0usize;
    while end < n {
        let (_, c, len) = char_at(t, b, end);
        if c == NEWLINE {
            last_newline_end = end + len;
        } else if c != SPACE {
            break;
        }
        last_char_start = end;
        end += len;
        chars += 1;
    }
    // 5. \s*[\r\n]: up to the run's last line break.
    if last_newline_end > 0 {
        return last_newline_end;
    }
    // 6. \s+(?!\S): the whole run at the end of the text, else all of it but the last character.
    if end == n {
        return n;
    }
    if chars >= 2 {
        return last_char_start;
    }
    // 7. \s+
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &Splitter, text: &str) -> Vec<String> {
        let mut v = Vec::new();
        s.for_each_chunk(text, |c| v.push(c.to_string())).unwrap();
        v
    }

    /// A small xorshift generator so the test needs no extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PALETTE: &[&str] = &[
        "a", "Z", "é", "e\u{301}", "ß", "字", "漢字", "ſ", "S", "s", "d", "M", "t", "l", "L", "v", "E", "r", "'", "'s",
        "'ll", "'VE", "'Re", "0", "7", "٣", "½", "Ⅻ", "²", " ", "  ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{3000}",
        "\u{2028}", "\u{85}", "\u{b}", "\u{c}", ".", ",", "!", "?", "-", "—", "😀", "👍🏽", "\u{200d}", "\u{301}",
        "$", "(", ")", "\u{0}", "\u{7f}", "é", "ñ", "Ω", "ﬁ", "\u{10FFFF}", "\u{1F600}", "x", "y", "hello",
        " world", "123456", "  \n", "\n\n", " \r\n ",
    ];

    #[test]
    fn scanner_matches_regex_on_fuzzed_text() {
        for &digits in &[1usize, 2, 3, 4] {
            let pattern = GPT4_PATTERN.replace(r"\p{N}{1,3}", &format!(r"\p{{N}}{{1,{digits}}}"));
            let fast = Splitter::new(&pattern, false).unwrap();
            assert!(fast.is_fast());
            let slow = Splitter::new(&pattern, true).unwrap();
            let mut rng = Rng(0x9E3779B97F4A7C15 ^ digits as u64);
            for _ in 0..20000 {
                let len = rng.below(24);
                let mut text = String::new();
                for _ in 0..len {
                    if rng.below(8) == 0 {
                        // any code point (not a surrogate)
                        let cp = rng.below(0x110000) as u32;
                        if let Some(c) = char::from_u32(cp) {
                            text.push(c);
                        }
                    } else {
                        text.push_str(PALETTE[rng.below(PALETTE.len())]);
                    }
                }
                assert_eq!(split(&fast, &text), split(&slow, &text), "text {text:?} digits {digits}");
            }
        }
    }

    #[test]
    fn pieces_give_the_same_chunks() {
        let fast = Splitter::new(GPT4_PATTERN, false).unwrap();
        let mut rng = Rng(12345);
        for _ in 0..500 {
            let mut text = String::new();
            for _ in 0..400 {
                text.push_str(PALETTE[rng.below(PALETTE.len())]);
            }
            let whole = split(&fast, &text);
            let mut parts = Vec::new();
            let pieces = fast.pieces(&text, 1 + rng.below(64));
            assert_eq!(pieces.concat(), text);
            for p in pieces {
                parts.extend(split(&fast, p));
            }
            assert_eq!(whole, parts);
        }
    }

    #[test]
    fn recognises_the_pattern_family() {
        assert_eq!(gpt4_family_digits(GPT4_PATTERN), Some(3));
        assert_eq!(gpt4_family_digits(&GPT4_PATTERN.replace("{1,3}", "{1,2}")), Some(2));
        assert_eq!(gpt4_family_digits(&GPT4_PATTERN.replace("{1,3}", "{1,0}")), None);
        assert_eq!(gpt4_family_digits(r"\w+"), None);
    }
}

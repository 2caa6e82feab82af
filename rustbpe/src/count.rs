//! Chunk counting: texts in, `unique chunk -> number of occurrences` out.
//!
//! Texts arrive in batches. A batch is cut into pieces (whole texts, or for the GPT-4 scanner,
//! big texts cut at safe places, see `Splitter::pieces`) and the pieces are split and counted in
//! parallel by rayon's threads. Each thread counts into its own maps, kept across batches, so the
//! only shared work is one merge of the per-thread maps at the end.
//!
//! Most chunks are short (a word with its leading space), so a chunk of up to 7 bytes is packed into
//! a `u64` key and one of up to 15 bytes into a `u128` key (bytes in the low bytes, length in the top
//! byte): hashing and comparing it is a couple of integer operations instead of a hash over a byte
//! slice and a `memcmp`, and the table of the most common (shortest) chunks stays small enough to
//! stay in cache, which matters: counting is bound by cache misses. Longer chunks go to a map keyed by
//! their bytes.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use hashbrown::HashMap;
use rayon::prelude::*;

use crate::pretokenize::Splitter;

/// Target size of a piece of text handed to one worker.
const PIECE_BYTES: usize = 256 * 1024;
/// Longest chunk that fits a `u64` key.
const TINY: usize = 7;
/// Longest chunk that fits a `u128` key.
const SMALL: usize = 15;

/// Hash for packed keys: one 64x64->128 multiply of the two halves, folded.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    #[inline(always)]
    fn write_u64(&mut self, k: u64) {
        let m = (k ^ 0x243F_6A88_85A3_08D3) as u128 * 0x9E37_79B9_7F4A_7C15u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
    #[inline(always)]
    fn write_u128(&mut self, k: u128) {
        let m = ((k as u64) ^ 0x243F_6A88_85A3_08D3) as u128 * (((k >> 64) as u64) ^ 0x1319_8A2E_0370_7344) as u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

type TinyMap = HashMap<u64, i64, BuildHasherDefault<KeyHasher>>;
type SmallMap = HashMap<u128, i64, BuildHasherDefault<KeyHasher>>;
type LongMap = HashMap<Box<[u8]>, i64, ahash::RandomState>;

/// Pack `text[start..start+len]` (len <= 15) into a key.
#[inline(always)]
fn pack(text: &[u8], start: usize, len: usize) -> u128 {
    let v = if start + 16 <= text.len() {
        u128::from_le_bytes(text[start..start + 16].try_into().unwrap())
    } else {
        let mut buf = [0u8; 16];
        buf[..len].copy_from_slice(&text[start..start + len]);
        u128::from_le_bytes(buf)
    };
    (v & ((1u128 << (8 * len)) - 1)) | ((len as u128) << 120)
}

/// Pack `text[start..start+len]` (len <= 7) into a key.
#[inline(always)]
fn pack_tiny(text: &[u8], start: usize, len: usize) -> u64 {
    let v = if start + 8 <= text.len() {
        u64::from_le_bytes(text[start..start + 8].try_into().unwrap())
    } else {
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(&text[start..start + len]);
        u64::from_le_bytes(buf)
    };
    (v & ((1u64 << (8 * len)) - 1)) | ((len as u64) << 56)
}

/// A chunk's bytes, either unpacked from a key or borrowed from the long map.
pub enum Chunk<'a> {
    Tiny([u8; 8]),
    Small([u8; 16]),
    Long(&'a [u8]),
}

impl AsRef<[u8]> for Chunk<'_> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        match self {
            Chunk::Tiny(b) => &b[..b[7] as usize],
            Chunk::Small(b) => &b[..b[15] as usize],
            Chunk::Long(b) => b,
        }
    }
}

/// Counts of unique chunks.
#[derive(Default)]
pub struct ChunkCounts {
    tiny: TinyMap,
    small: SmallMap,
    long: LongMap,
}

impl ChunkCounts {
    #[inline(always)]
    fn add(&mut self, text: &[u8], start: usize, end: usize) {
        let len = end - start;
        if len <= TINY {
            *self.tiny.entry(pack_tiny(text, start, len)).or_insert(0) += 1;
        } else if len <= SMALL {
            *self.small.entry(pack(text, start, len)).or_insert(0) += 1;
        } else {
            *self.long.entry_ref(&text[start..end]).or_insert(0) += 1;
        }
    }

    fn merge(&mut self, other: ChunkCounts) {
        for (k, v) in other.tiny {
            *self.tiny.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.small {
            *self.small.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.long {
            *self.long.entry(k).or_insert(0) += v;
        }
    }

    /// Number of unique chunks.
    pub fn len(&self) -> usize {
        self.tiny.len() + self.small.len() + self.long.len()
    }

    /// Unique chunks per key kind: (up to 7 bytes, 8-15 bytes, longer).
    pub fn tier_sizes(&self) -> (usize, usize, usize) {
        (self.tiny.len(), self.small.len(), self.long.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every unique chunk with its count (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (Chunk<'_>, i64)> + '_ {
        let tiny = self.tiny.iter().map(|(&k, &v)| (Chunk::Tiny(k.to_le_bytes()), v));
        let small = self.small.iter().map(|(&k, &v)| (Chunk::Small(k.to_le_bytes()), v));
        let long = self.long.iter().map(|(k, &v)| (Chunk::Long(&k[..]), v));
        tiny.chain(small).chain(long)
    }
}

pub struct ChunkCounter {
    /// One set of maps per rayon worker, plus one for calls from outside the pool.
    maps: Vec<Mutex<ChunkCounts>>,
    error: Mutex<Option<String>>,
}

impl Default for ChunkCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkCounter {
    pub fn new() -> ChunkCounter {
        let n = rayon::current_num_threads() + 1;
        ChunkCounter { maps: (0..n).map(|_| Mutex::new(ChunkCounts::default())).collect(), error: Mutex::new(None) }
    }

    /// Split and count every text of a batch.
    pub fn add_batch(&self, splitter: &Splitter, texts: &[&str]) -> Result<(), String> {
        let mut pieces: Vec<&str> = Vec::with_capacity(texts.len());
        for t in texts {
            pieces.extend(splitter.pieces(t, PIECE_BYTES));
        }
        // Big pieces first, so a large text does not start last and run alone.
        if pieces.len() > 1 {
            pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
        }
        pieces.par_iter().with_max_len(1).for_each(|piece| {
            let slot = rayon::current_thread_index().map_or(self.maps.len() - 1, |i| i.min(self.maps.len() - 1));
            let mut counts = self.maps[slot].lock().unwrap();
            let bytes = piece.as_bytes();
            if let Err(e) = splitter.for_each_span(piece, |s, e| counts.add(bytes, s, e)) {
                self.error.lock().unwrap().get_or_insert(e);
            }
        });
        match self.error.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Merge the per-thread maps into one.
    pub fn finish(self) -> ChunkCounts {
        let mut maps: Vec<ChunkCounts> = self.maps.into_iter().map(|m| m.into_inner().unwrap()).collect();
        maps.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut total = maps.remove(0);
        for m in maps {
            total.merge(m);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keys_round_trip() {
        let text = b"abc\0\0xyz0123456789abcdefghij";
        for start in 0..text.len() {
            for len in 0..=SMALL.min(text.len() - start) {
                let k = pack(text, start, len);
                let c = Chunk::Small(k.to_le_bytes());
                assert_eq!(c.as_ref(), &text[start..start + len]);
            }
        }
        for start in 0..text.len() {
            for len in 0..=TINY.min(text.len() - start) {
                let c = Chunk::Tiny(pack_tiny(text, start, len).to_le_bytes());
                assert_eq!(c.as_ref(), &text[start..start + len]);
            }
        }
        // a trailing NUL byte makes a different key
        assert_ne!(pack(b"a\0", 0, 1), pack(b"a\0", 0, 2));
        assert_ne!(pack_tiny(b"a\0", 0, 1), pack_tiny(b"a\0", 0, 2));
    }
}

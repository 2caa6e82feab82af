//! Encoding text with a trained vocabulary, the way tiktoken does it.
//!
//! Each chunk from the split pattern is encoded on its own: if the whole chunk is a token it is one
//! id; otherwise it starts as bytes and the adjacent pair whose joined bytes have the lowest rank
//! (token id) is merged, leftmost first on ties, until no joined pair is a token. This is tiktoken's
//! rule, so a `tiktoken.Encoding` built from `get_mergeable_ranks()` gives the same ids.

use hashbrown::HashMap;

pub type RankMap = HashMap<Box<[u8]>, u32, ahash::RandomState>;

/// The token bytes of every id: the 256 single bytes, then one entry per merge.
pub fn vocab_from_merges(merges: &[(u32, u32)]) -> Vec<Vec<u8>> {
    let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for &(a, b) in merges {
        let mut bytes = vocab[a as usize].clone();
        bytes.extend_from_slice(&vocab[b as usize]);
        vocab.push(bytes);
    }
    vocab
}

/// bytes -> id. Should two merges ever spell the same bytes, the first (lowest) id is kept, as a
/// tiktoken rank table built from the vocabulary would need.
pub fn rank_map(vocab: &[Vec<u8>]) -> RankMap {
    let mut map = RankMap::with_capacity_and_hasher(vocab.len(), ahash::RandomState::with_seeds(5, 6, 7, 8));
    for (id, bytes) in vocab.iter().enumerate() {
        map.entry(bytes.clone().into_boxed_slice()).or_insert(id as u32);
    }
    map
}

#[inline]
fn rank_of(ranks: &RankMap, piece: &[u8], parts: &[(usize, u32)], i: usize) -> u32 {
    if i + 2 < parts.len() {
        ranks.get(&piece[parts[i].0..parts[i + 2].0]).copied().unwrap_or(u32::MAX)
    } else {
        u32::MAX
    }
}

/// Append the ids of one chunk to `out`.
pub fn encode_chunk(ranks: &RankMap, piece: &[u8], out: &mut Vec<u32>) {
    if let Some(&id) = ranks.get(piece) {
        out.push(id);
        return;
    }
    // parts[i] = (start byte of token i, rank of the pair (token i, token i+1)); the last entry
    // marks the end of the chunk.
    let mut parts: Vec<(usize, u32)> = (0..=piece.len()).map(|i| (i, u32::MAX)).collect();
    for i in 0..parts.len().saturating_sub(2) {
        parts[i].1 = rank_of(ranks, piece, &parts, i);
    }
    loop {
        let mut best = (u32::MAX, 0usize);
        for (i, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
            if r < best.0 {
                best = (r, i);
            }
        }
        if best.0 == u32::MAX {
            break;
        }
        let i = best.1;
        parts.remove(i + 1);
        parts[i].1 = rank_of(ranks, piece, &parts, i);
        if i > 0 {
            parts[i - 1].1 = rank_of(ranks, piece, &parts, i - 1);
        }
    }
    for w in parts.windows(2) {
        out.push(ranks[&piece[w[0].0..w[1].0]]);
    }
}

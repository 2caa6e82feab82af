//! The BPE merge loop: from counted chunks to an ordered list of merges.
//!
//! Each unique chunk ("word") is a sequence of token ids, starting as its bytes, weighted by how many
//! times the chunk occurred. A merge step takes the adjacent pair with the highest total count
//! (ties: the smallest pair `(left, right)`), gives it the next id, and rewrites every occurrence,
//! left to right without overlaps ("aaa" with (a,a) becomes [aa, a]).
//!
//! Counts are kept up to date incrementally: the merge of (a, b) into n only touches the words that
//! contain (a, b), and only the pairs next to each occurrence change: (x, a) and (b, y) lose one,
//! (x, n) and (n, y) gain one. A max-heap orders the pairs; its entries are not updated when a count
//! drops, instead a popped entry whose stored count is stale is pushed back with the current count
//! (counts of existing pairs only ever fall, so the stored count is an upper bound and the first
//! entry that pops with an up-to-date count is the true maximum).
//!
//! Every pair that contains a merged token is created in exactly one step (the step that creates
//! the later of its two tokens; tokens never move, so no other step can make them adjacent), so the
//! list of words where a pair occurs is built once, in that step, and never needs updating: words
//! where the pair has since disappeared are simply skipped when it is merged.

use std::collections::BinaryHeap;

use hashbrown::HashMap;

/// All words in one flat array: each word is `[len, count_lo, count_hi, id, id, ...]` at a fixed
/// offset (a merge shrinks it in place). Keeping the header next to the ids means visiting a word
/// costs one cache miss, not three; the merge loop is bound by those misses.
const HEADER: usize = 3;

#[inline(always)]
fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// A hasher for `u64` pair keys: one multiply, folded so both halves of the key reach the low bits
/// hashbrown uses for the bucket and the high bits it uses for the tag.
#[derive(Default, Clone, Copy)]
pub struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
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
        let h = (k ^ (k >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.0 = h ^ (h >> 32);
    }
}

pub type PairBuild = std::hash::BuildHasherDefault<PairHasher>;
type PairMap<V> = HashMap<u64, V, PairBuild>;

/// A heap entry: ordered by count, then by the smaller pair first.
#[derive(PartialEq, Eq)]
struct Entry {
    /// count in the high 64 bits, the bit-complement of the pair key in the low 64 bits, so that a
    /// plain integer max gives "highest count, then smallest pair".
    order: u128,
    /// index into the table of occurrence lists
    where_: u32,
}

impl Entry {
    fn new(count: i64, pair: u64, where_: u32) -> Entry {
        Entry { order: ((count as u128) << 64) | (!pair) as u128, where_ }
    }
    fn count(&self) -> i64 {
        (self.order >> 64) as i64
    }
    fn pair(&self) -> u64 {
        !(self.order as u64)
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order.cmp(&other.order)
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The merge loop's working set.
struct State {
    /// every word, `[len, count_lo, count_hi, ids...]` at a fixed offset (see HEADER)
    arena: Vec<u32>,
    /// the current total count of every pair that still occurs
    pair_counts: PairMap<i64>,
    /// occurrence lists: the words (arena offsets) where a pair was created; a heap entry points at one
    lists: Vec<Vec<u32>>,
    heap: BinaryHeap<Entry>,
}

/// Learn up to `num_merges` merges from `(chunk bytes, count)` pairs. Returns the merges in order:
/// merge k is `(left, right)` and creates token `256 + k`. Fewer merges come back when no pair is
/// left to merge. `progress(done)` is called every `progress_every` merges and may stop training by
/// returning an error, which is passed on.
pub fn learn_merges<E, B: AsRef<[u8]>, I: IntoIterator<Item = (B, i64)>>(
    chunks: I,
    num_merges: u32,
    progress_every: u32,
    mut progress: impl FnMut(u32) -> Result<(), E>,
) -> Result<Vec<(u32, u32)>, E> {
    let mut state = build_state(chunks);
    let mut merges: Vec<(u32, u32)> = Vec::with_capacity(num_merges as usize);
    // pairs created in the current step: pair -> (count, words holding it)
    let mut fresh: PairMap<(i64, Vec<u32>)> = PairMap::default();
    while (merges.len() as u32) < num_merges {
        let Some((pair, where_)) = pop_best(&mut state) else { break };
        let new_id = 256 + merges.len() as u32;
        merges.push(((pair >> 32) as u32, pair as u32));
        apply_merge(&mut state, &mut fresh, pair, where_, new_id);
        let done = merges.len() as u32;
        if progress_every > 0 && done % progress_every == 0 {
            progress(done)?;
        }
    }
    Ok(merges)
}

/// Words (chunks of two or more bytes: single bytes have no pairs), most frequent first, laid out in
/// the arena; every pair counted, with the list of words it occurs in, and pushed on the heap.
fn build_state<B: AsRef<[u8]>, I: IntoIterator<Item = (B, i64)>>(chunks: I) -> State {
    let mut words: Vec<(i64, B)> = Vec::new();
    let mut total = 0usize;
    for (bytes, count) in chunks {
        let len = bytes.as_ref().len();
        if len >= 2 && count > 0 {
            total += HEADER + len;
            words.push((count, bytes));
        }
    }
    // Most frequent first: the words that many merges visit sit together in memory.
    words.sort_unstable_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.as_ref().cmp(y.1.as_ref())));
    let mut arena: Vec<u32> = Vec::with_capacity(total);
    let mut pair_counts: PairMap<i64> = PairMap::default();
    let mut where_index: PairMap<u32> = PairMap::default();
    let mut lists: Vec<Vec<u32>> = Vec::new();
    for (count, bytes) in words {
        let bytes = bytes.as_ref();
        let w = arena.len() as u32;
        arena.push(bytes.len() as u32);
        arena.push(count as u32);
        arena.push((count as u64 >> 32) as u32);
        arena.extend(bytes.iter().map(|&b| b as u32));
        for pair in bytes.windows(2) {
            let k = key(pair[0] as u32, pair[1] as u32);
            *pair_counts.entry(k).or_insert(0) += count;
            let li = *where_index.entry(k).or_insert_with(|| {
                lists.push(Vec::new());
                (lists.len() - 1) as u32
            });
            let list = &mut lists[li as usize];
            if list.last() != Some(&w) {
                list.push(w);
            }
        }
    }
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(pair_counts.len() * 2);
    for (&k, &li) in where_index.iter() {
        heap.push(Entry::new(pair_counts[&k], k, li));
    }
    State { arena, pair_counts, lists, heap }
}

/// The pair to merge next and its occurrence list: pops stale entries (pair gone: its list is freed;
/// count fallen: pushed back with the current count) until one is up to date. None when no pair is left.
#[inline(always)]
fn pop_best(state: &mut State) -> Option<(u64, u32)> {
    loop {
        let top = state.heap.pop()?;
        let pair = top.pair();
        let current = state.pair_counts.get(&pair).copied().unwrap_or(0);
        if current <= 0 {
            state.lists[top.where_ as usize] = Vec::new();
        } else if current != top.count() {
            state.heap.push(Entry::new(current, pair, top.where_));
        } else {
            state.pair_counts.remove(&pair);
            return Some((pair, top.where_));
        }
    }
}

/// Merge `pair` into `new_id` in every word of its occurrence list, then publish the pairs the step
/// created (with their words) to the counts and the heap.
#[inline(always)]
fn apply_merge(state: &mut State, fresh: &mut PairMap<(i64, Vec<u32>)>, pair: u64, where_: u32, new_id: u32) {
    let list = std::mem::take(&mut state.lists[where_ as usize]);
    for (li, &w) in list.iter().enumerate() {
        if let Some(&ahead) = list.get(li + PREFETCH_AHEAD) {
            prefetch(&state.arena[ahead as usize]);
        }
        merge_word(&mut state.arena, &mut state.pair_counts, fresh, w, pair, new_id);
    }
    drop(list);
    for (k, (count, ws)) in fresh.drain() {
        if count > 0 {
            state.pair_counts.insert(k, count);
            state.lists.push(ws);
            state.heap.push(Entry::new(count, k, (state.lists.len() - 1) as u32));
        }
    }
}

/// Rewrite word `w` left to right with every (a, b) replaced by `new_id`, updating the counts of the
/// neighbouring pairs: (x, a) and (b, y) lose the word's count, (x, new) and (new, y) gain it.
#[inline(always)]
fn merge_word(
    arena: &mut [u32],
    pair_counts: &mut PairMap<i64>,
    fresh: &mut PairMap<(i64, Vec<u32>)>,
    w: u32,
    pair: u64,
    new_id: u32,
) {
    let (a, b) = ((pair >> 32) as u32, pair as u32);
    let o = w as usize;
    let n = arena[o] as usize;
    let c = (arena[o + 1] as u64 | (arena[o + 2] as u64) << 32) as i64;
    let ids = &mut arena[o + HEADER..o + HEADER + n];
    let (mut read, mut write) = (0usize, 0usize);
    let mut changed = false;
    while read < n {
        if read + 1 < n && ids[read] == a && ids[read + 1] == b {
            changed = true;
            if write > 0 {
                let x = ids[write - 1];
                // (x, a) goes, (x, new) comes. x == new_id when the previous token was
                // just merged here: that (new, a) pair was counted a moment ago.
                dec(pair_counts, fresh, new_id, key(x, a), c);
                inc(fresh, key(x, new_id), c, w);
            }
            if read + 2 < n {
                let y = ids[read + 2];
                dec(pair_counts, fresh, new_id, key(b, y), c);
                inc(fresh, key(new_id, y), c, w);
            }
            ids[write] = new_id;
            write += 1;
            read += 2;
        } else {
            ids[write] = ids[read];
            write += 1;
            read += 1;
        }
    }
    if changed {
        arena[o] = write as u32;
    }
}

/// How many words ahead of the one being merged to prefetch.
const PREFETCH_AHEAD: usize = 8;

#[inline(always)]
fn prefetch(x: &u32) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    // SAFETY: a prefetch is only a hint; the pointer comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(x as *const u32 as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Lower the count of `k` by `c`: in this step's fresh pairs if it contains the new token, else in
/// the global counts (dropping the entry when it reaches zero).
#[inline(always)]
fn dec(pair_counts: &mut PairMap<i64>, fresh: &mut PairMap<(i64, Vec<u32>)>, new_id: u32, k: u64, c: i64) {
    if (k >> 32) as u32 == new_id || k as u32 == new_id {
        if let Some(e) = fresh.get_mut(&k) {
            e.0 -= c;
        }
        return;
    }
    if let hashbrown::hash_map::EntryRef::Occupied(mut e) = pair_counts.entry_ref(&k) {
        *e.get_mut() -= c;
        if *e.get() <= 0 {
            e.remove();
        }
    }
}

#[inline(always)]
fn inc(fresh: &mut PairMap<(i64, Vec<u32>)>, k: u64, c: i64, w: u32) {
    let e = fresh.entry(k).or_insert_with(|| (0, Vec::new()));
    e.0 += c;
    if e.1.last() != Some(&w) {
        e.1.push(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward BPE: recount every pair at every step.
    fn reference(chunks: &[(&[u8], i64)], num_merges: u32) -> Vec<(u32, u32)> {
        let mut words: Vec<(Vec<u32>, i64)> =
            chunks.iter().map(|(b, c)| (b.iter().map(|&x| x as u32).collect(), *c)).collect();
        let mut merges = Vec::new();
        for step in 0..num_merges {
            let mut counts: std::collections::BTreeMap<(u32, u32), i64> = Default::default();
            for (w, c) in &words {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_default() += c;
                }
            }
            let Some((&best, _)) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0))) else { break };
            let new_id = 256 + step;
            merges.push(best);
            for (w, _) in words.iter_mut() {
                let mut out = Vec::new();
                let mut i = 0;
                while i < w.len() {
                    if i + 1 < w.len() && (w[i], w[i + 1]) == best {
                        out.push(new_id);
                        i += 2;
                    } else {
                        out.push(w[i]);
                        i += 1;
                    }
                }
                *w = out;
            }
        }
        merges
    }

    #[test]
    fn matches_reference_on_random_words() {
        let mut s = 88172645463325252u64;
        let mut rnd = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for trial in 0..300 {
            let alphabet = 2 + rnd(4) as u8;
            let nwords = 1 + rnd(12) as usize;
            let mut owned: Vec<(Vec<u8>, i64)> = Vec::new();
            for _ in 0..nwords {
                let len = 1 + rnd(10) as usize;
                let w: Vec<u8> = (0..len).map(|_| b'a' + rnd(alphabet as u64) as u8).collect();
                owned.push((w, 1 + rnd(5) as i64));
            }
            let chunks: Vec<(&[u8], i64)> = owned.iter().map(|(w, c)| (w.as_slice(), *c)).collect();
            let want = reference(&chunks, 40);
            let got = learn_merges::<(), _, _>(chunks.iter().copied(), 40, 0, |_| Ok(())).unwrap();
            assert_eq!(got, want, "trial {trial}: {owned:?}");
        }
    }
}

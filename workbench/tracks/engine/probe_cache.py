"""Probes for the KV cache: KVCache.get_pos, insert_kv (positions, what comes back, growing) and prefill.

All tensors are float64, so any difference is the learner's logic, never rounding. The cache's attributes
(`pos`, `kv`, the sizes) are those of KVCache.__init__, which the skeleton keeps as it is.
"""

import torch

from workbench.tracks.base import Exercise
from workbench.tracks.engine.rows import with_context
from workbench.tracks.outcome import attempt, max_abs_diff, mismatch, passed

LAYERS, ROWS, HEADS, HEAD_DIM = 3, 2, 2, 4
CHUNKS = (3, 1, 2)  # tokens per forward: a prompt, one decode step, then two more (past SEQ_LEN: the cache grows)
SEQ_LEN = 5
TOL = 1e-12


def _cache(module, exercise, batch=ROWS, seq_len=SEQ_LEN):
    return attempt(exercise, module, module.KVCache, batch_size=batch, num_heads=HEADS, seq_len=seq_len,
                   head_dim=HEAD_DIM, num_layers=LAYERS)


def get_pos(exercise: Exercise, learner, reference):
    cache, bad = _cache(learner, exercise)
    if bad:
        return bad
    fresh, bad = attempt(exercise, learner, cache.get_pos)
    if bad:
        return bad
    cache.pos = 7
    later, bad = attempt(exercise, learner, cache.get_pos)
    if bad:
        return bad
    if fresh != 0:
        return mismatch(exercise, f"a new cache says it is at position {fresh!r}; nothing is cached yet, so 0")
    if later != 7:
        return mismatch(exercise, f"with 7 positions cached it says {later!r}: return the cache's position (pos)")
    return passed(exercise, "0 for a new cache, then the cache's position")


def _chunks():
    g = torch.Generator().manual_seed(0)
    return [[(torch.randn(ROWS, HEADS, t, HEAD_DIM, generator=g, dtype=torch.float64),
              torch.randn(ROWS, HEADS, t, HEAD_DIM, generator=g, dtype=torch.float64)) for _ in range(LAYERS)]
            for t in CHUNKS]


def _position_mistake(got: int, before: int, layer: int, tokens: int) -> str:
    if layer < LAYERS - 1:
        if got == before + tokens:
            return (f"your cache position advances after layer {layer}, before the last layer has inserted: "
                    f"layers {layer + 1}.. write at the next position")
        return f"after layer {layer} inserted {tokens} tokens at position {before} the position is {got}, not {before}"
    if got == before:
        return "your cache position does not advance after the last layer"
    if got == before + LAYERS * tokens:
        return "your cache position advances after every layer (by layers × tokens per forward), not once"
    return (f"after the last layer inserted {tokens} tokens at position {before} the position is {got}, "
            f"not {before + tokens}")


def _returned_mistake(got, k, v, want_k, want_v, before: int) -> str | None:
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        return f"insert_kv must return (keys, values), two tensors; it returned {type(got).__name__}"
    got_k, got_v = got
    if tuple(got_k.shape) == tuple(k.shape) and before > 0:
        return "insert_kv returns only the new keys and values, not everything cached so far"
    if tuple(got_k.shape) != tuple(want_k.shape):
        return f"insert_kv returned keys of shape {tuple(got_k.shape)}, the reference {tuple(want_k.shape)}"
    if max_abs_diff(got_k, want_v) < TOL and max_abs_diff(got_v, want_k) < TOL:
        return "keys and values are swapped"
    if before > 0 and max_abs_diff(got_k[:, :, :k.size(2)], k) < TOL:
        return "the new keys are written at position 0 instead of at the cache position"
    return None


def insert_kv(exercise: Exercise, learner, reference):
    mine, bad = _cache(learner, exercise)
    if bad:
        return bad
    ref = reference.KVCache(ROWS, HEADS, SEQ_LEN, HEAD_DIM, LAYERS)
    worst = 0.0
    for chunk in _chunks():
        before = ref.pos
        for layer, (k, v) in enumerate(chunk):
            want = ref.insert_kv(layer, k, v)
            got, bad = attempt(exercise, learner, mine.insert_kv, layer, k.clone(), v.clone())
            if bad:
                grows = before + k.size(2) > SEQ_LEN
                return with_context(bad, f"when the sequence outgrows seq_len={SEQ_LEN} (the cache must grow)") \
                    if grows else bad
            if mine.pos != ref.pos:
                return mismatch(exercise, _position_mistake(mine.pos, before, layer, k.size(2)))
            named = _returned_mistake(got, k, v, *want, before)
            if named:
                return mismatch(exercise, named, max_abs_diff(got[0], want[0]) if isinstance(got, tuple) else None)
            diff = max(max_abs_diff(got[0], want[0]), max_abs_diff(got[1], want[1]))
            if diff > TOL:
                return mismatch(exercise, f"layer {layer}'s keys/values after inserting {k.size(2)} tokens at "
                                          f"position {before} differ from the reference's", diff)
            worst = max(worst, diff)
    return passed(exercise, f"{len(CHUNKS)} forwards × {LAYERS} layers: same keys, values and positions, "
                            f"growing past seq_len={SEQ_LEN}", worst)


def _prompt_cache(learner):
    """A batch-1 learner cache holding 5 positions of random float64 keys and values."""
    one = learner.KVCache(batch_size=1, num_heads=HEADS, seq_len=5, head_dim=HEAD_DIM, num_layers=LAYERS)
    g = torch.Generator().manual_seed(1)
    one.kv = torch.randn(LAYERS, 2, 1, HEADS, 5, HEAD_DIM, generator=g, dtype=torch.float64)
    one.pos = 5
    return one


def _same(a, b) -> bool:
    return max_abs_diff(a, b) < TOL


def _prefill_mistake(got, want) -> str | None:
    """Name the slice that went wrong: layers, keys vs values, or rows."""
    if _same(got[0], want[0]) and not _same(got[1:], want[1:]):
        return "prefill copies only the first layer"
    if _same(got[:, 0], want[:, 0]) and not _same(got[:, 1], want[:, 1]):
        return "prefill copies only the keys, not the values"
    if _same(got[:, :, 0], want[:, :, 0]) and not _same(got[:, :, 1:], want[:, :, 1:]):
        return "prefill copies the prompt into the first row only"
    return None


def prefill(exercise: Exercise, learner, reference):
    one, bad = attempt(exercise, learner, _prompt_cache, learner)
    if bad:
        return bad
    many, bad = _cache(learner, exercise, batch=3, seq_len=9)
    if bad:
        return bad
    _, bad = attempt(exercise, learner, many.prefill, one)
    if bad:
        return bad
    if many.pos != one.pos:
        return mismatch(exercise, f"prefill leaves the position at {many.pos}; the rows must continue from the "
                                  f"prompt's position {one.pos}")
    if not isinstance(many.kv, torch.Tensor) or many.kv.size(4) < one.pos:
        return mismatch(exercise, "after prefill the cache has no room for the prompt's positions (kv not allocated)")
    got = many.kv[:, :, :, :, :one.pos]
    want = one.kv[:, :, :, :, :one.pos].expand(-1, -1, 3, -1, -1, -1)
    if tuple(got.shape) != tuple(want.shape):
        return mismatch(exercise, f"the cache's first {one.pos} positions have shape {tuple(got.shape)}, "
                                  f"expected {tuple(want.shape)}")
    diff = max_abs_diff(got, want)
    if diff > TOL:
        why = _prefill_mistake(got, want) or "the copied keys/values differ from the prompt's"
        return mismatch(exercise, why, diff)
    return passed(exercise, f"{LAYERS} layers × keys and values × 3 rows copied, position {one.pos}", diff)

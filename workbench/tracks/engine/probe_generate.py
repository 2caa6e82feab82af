"""Probes for the Engine: `_advance` (stop tokens, the calculator) and `generate` (prefill once, then one token
per step through the cache).

`generate` is checked on its own: while it runs, the learner's module uses the reference's KVCache,
sample_next_token and Engine._advance, so a bug there is blamed on the function that has it. It runs twice: on a
scripted model that writes a calculator call and ends its turn (stop tokens, forced tokens and their masks), and
on a tiny random reference GPT, sampled with a seed (tokens, the calls to the model, the cache it leaves).
"""

from contextlib import contextmanager

from workbench.tracks.base import Exercise
from workbench.tracks.engine.stand_ins import (PROMPT, SPECIAL, ByteTokenizer, Recorder, ScriptedModel, text_ids,
                                               tiny_gpt)
from workbench.tracks.outcome import attempt, max_abs_diff, mismatch, passed

CALL = [SPECIAL["python_start"], *text_ids("12*7"), SPECIAL["python_end"]]
ANSWER = [SPECIAL["output_start"], *text_ids("84"), SPECIAL["output_end"]]
SEQUENCES = {  # what is fed to _advance, one token at a time, on a fresh row
    "a calculator call": CALL,
    "<|assistant_end|>": [text_ids("a")[0], SPECIAL["assistant_end"]],
    "<|bos|>": [SPECIAL["bos"]],
    "<|python_end|> with no call open": [SPECIAL["python_end"], *text_ids("ok")],
    "an expression the calculator refuses": [SPECIAL["python_start"], *text_ids("1/0"), SPECIAL["python_end"]],
}


def _state(row) -> dict:
    return {"done": row.done, "in_python": row.in_python, "forced": list(row.forced)}


def _advance_mistake(name: str, got: dict, want: dict) -> str:
    if name in ("<|assistant_end|>", "<|bos|>") and not got["done"]:
        return f"the row does not finish at {name}"
    if got["done"] and not want["done"]:
        return f"after {name} the row is finished, but nothing ended it"
    if name == "a calculator call":
        if not got["forced"]:
            return "the calculator's answer is never queued (row.forced stays empty after <|python_end|>)"
        if got["forced"] == ANSWER[1:-1]:
            return "the calculator's answer is forced without its <|output_start|> … <|output_end|> markers"
        if got["in_python"]:
            return "the row is still reading an expression after <|python_end|>"
    return f"after {name} the row is {got}, the reference's {want}"


def advance(exercise: Exercise, learner, reference):
    tokenizer = ByteTokenizer()
    mine, bad = attempt(exercise, learner, learner.Engine, None, tokenizer)
    if bad:
        return bad
    ref = reference.Engine(None, tokenizer)
    for name, tokens in SEQUENCES.items():
        row, ref_row = learner._Row(), reference._Row()
        for token in tokens:
            ref._advance(ref_row, token)
            _, bad = attempt(exercise, learner, mine._advance, row, token)
            if bad:
                return bad
        got, want = _state(row), _state(ref_row)
        if got != want:
            return mismatch(exercise, _advance_mistake(name, got, want))
    return passed(exercise, "stops at <|assistant_end|> and <|bos|>; 12*7 forced back as 84 between the output "
                            "markers; a refused expression forces nothing")


@contextmanager
def reference_parts(learner, reference):
    """The learner's module with the reference's cache, sampler and _advance in place, for as long as it runs."""
    saved = {name: learner.__dict__.get(name) for name in ("KVCache", "sample_next_token")}
    saved_advance = learner.Engine.__dict__.get("_advance")
    learner.KVCache, learner.sample_next_token = reference.KVCache, reference.sample_next_token
    learner.Engine._advance = reference.Engine._advance
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(learner, name, value)
        if saved_advance is None:
            del learner.Engine._advance
        else:
            learner.Engine._advance = saved_advance


def _columns(engine, **kwargs) -> list[tuple[list, list]]:
    """Everything `engine.generate` yields for the prompt, as lists."""
    return [(list(column), list(masks)) for column, masks in engine.generate(list(PROMPT), **kwargs)]


def _run(exercise, learner, engine, **kwargs):
    return attempt(exercise, learner, _columns, engine, **kwargs)


def _stream_mistake(got, want) -> str:
    if len(got) > len(want) and got[:len(want)] == want:
        return (f"the stream goes on after every row ended its turn ({len(got)} columns, the reference stops "
                f"after {len(want)} at <|assistant_end|>)")
    for step, (g, w) in enumerate(zip(got, want)):
        if g[0] != w[0]:
            forced = " (a calculator answer the engine must force in)" if 0 in w[1] else ""
            return f"column {step}: tokens {g[0]}, the reference's {w[0]}{forced}"
        if g[1] != w[1]:
            return f"column {step}: masks {g[1]}, the reference's {w[1]} (forced tokens have mask 0, sampled 1)"
    return f"the stream has {len(got)} columns, the reference's {len(want)}"


def _calls_mistake(calls, rows: int) -> str | None:
    if not calls or calls[0][2] is None:
        return "the model is called without the cache (kv_cache=...)"
    if calls[0][0] != 1:
        return f"the prompt is run with batch {calls[0][0]}: run it once (batch 1) and prefill the rows' cache from it"
    longer = [c for c in calls[1:] if c[1] != 1]
    if longer:
        return "after the prompt, each step must feed only the newest token; yours feeds the sequence again"
    if any(c[0] != rows for c in calls[1:]):
        return f"decode steps must run all {rows} rows together"
    return None


def _scripted(exercise, learner, reference):
    tokenizer = ByteTokenizer()
    kwargs = dict(num_samples=2, max_tokens=20, temperature=0.0)
    want = _columns(reference.Engine(ScriptedModel(), tokenizer), **kwargs)
    model = ScriptedModel()
    got, bad = _run(exercise, learner, learner.Engine(model, tokenizer), **kwargs)
    if bad:
        return bad
    if got != want:
        return mismatch(exercise, f"with a calculator call and <|assistant_end|>: {_stream_mistake(got, want)}")
    named = _calls_mistake(model.calls, 2)
    return mismatch(exercise, named) if named else None


def _cache_diff(mine, ref) -> float:
    if mine is None or mine.pos != ref.pos:
        return float("inf")
    return max_abs_diff(mine.kv[:, :, :, :, :ref.pos], ref.kv[:, :, :, :, :ref.pos])


def generate(exercise: Exercise, learner, reference):
    with reference_parts(learner, reference):
        bad = _scripted(exercise, learner, reference)
        if bad:
            return bad
        gpt = tiny_gpt()
        kwargs = dict(num_samples=3, max_tokens=12, temperature=0.9, top_k=20, seed=11)
        ref_model = Recorder(gpt)
        want = _columns(reference.Engine(ref_model), **kwargs)
        model = Recorder(gpt)
        got, bad = _run(exercise, learner, learner.Engine(model), **kwargs)
    if bad:
        return bad
    named = _calls_mistake(model.calls, 3)
    if named:
        return mismatch(exercise, named)
    if got != want:
        rows = [list(r) for r in zip(*[c for c, _ in got])]
        if len(rows) == 3 and rows[0] == rows[1] == rows[2]:
            return mismatch(exercise, "all 3 rows sample the same tokens: row i needs its own generator, "
                                      "seeded seed + i")
        return mismatch(exercise, f"on a tiny GPT (3 rows, temperature 0.9, top-k 20, seed 11): "
                                  f"{_stream_mistake(got, want)}")
    diff = _cache_diff(model.last_cache, ref_model.last_cache)
    if diff > 1e-6:
        return mismatch(exercise, "the same tokens, but the cache left behind differs from the reference's", diff)
    return passed(exercise, f"calculator call, forced answer and stop as the reference; {len(want)} sampled columns "
                            f"× 3 rows and the cache identical on a tiny GPT", diff)

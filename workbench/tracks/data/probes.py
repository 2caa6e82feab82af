"""The data track's check: the learner's dataloader functions against nanochat/dataloader.py on the same inputs.

Every probe runs on a small data set written for the check: three parquet shards (two train, one val) of short
documents in row groups of three, in a temporary $NANOCHAT_BASE_DIR, read through the real `nanochat.dataset`.
A stand-in tokenizer turns document n into `n_tokens(n)` ids that say which document and which position they come
from, so a wrong batch can be explained ("3 tokens were dropped") and not only flagged. Ranks are
set as torchrun sets them (RANK, LOCAL_RANK, WORLD_SIZE) while a probe runs. Batches, keys and states are compared
exactly: a data loader has no float rounding to forgive.

Each function is checked on its own: while the loader runs, the learner's module calls the reference's helpers
(`_resume_position`, `_documents`, `_advance`), so a bug shows in the row of the function that has it, and a
helper still a TODO does not hold the loader's row back.
"""

import io
import os
import shutil
import tempfile
from collections import deque
from contextlib import contextmanager
from itertools import islice
from types import ModuleType

from workbench.check.result import Component
from workbench.tracks.data.spec import EXERCISES
from workbench.tracks.outcome import attempt, mismatch, passed

EX = {e.qualname: e for e in EXERCISES}
FILES, GROUPS, ROWS = 3, 4, 3  # shards, row groups per shard, documents per row group (file FILES-1 is val)
BOS = 1023
B, T = 2, 8


# ---------------------------------------------------------------------------------------------------------------
# the data: documents whose tokens say where they come from

def doc_text(n: int) -> str:
    return f"document {n}: " + "lorem ipsum " * (n % 5)


def n_tokens(n: int) -> int:
    return (n * 7) % 15 + 1  # 1..15 tokens, so documents straddle rows and batches


def doc_ids(n: int) -> list[int]:
    return [1 + 16 * n + j for j in range(n_tokens(n))]


def row_group_of(text: str) -> int | None:
    """The row group (within its shard) that holds a document of the check's data, from its text."""
    head = text.split(":", 1)[0]
    if not head.startswith("document ") or not head[9:].isdigit():
        return None
    return int(head[9:]) % (GROUPS * ROWS) // ROWS


def describe(token: int) -> str:
    return "<|bos|>" if token == BOS else f"document {(token - 1) // 16} token {(token - 1) % 16}"


class DocTokenizer:
    """The stand-in tokenizer: the loader's side of nanochat's tokenizer (encode, the BOS id), nothing more."""

    def __init__(self):
        self.ids = {doc_text(n): doc_ids(n) for n in range(FILES * GROUPS * ROWS)}

    def get_bos_token_id(self) -> int:
        return BOS

    def encode_special(self, text: str) -> int:
        if text != "<|bos|>":
            raise ValueError(f"{text!r}: this check's tokenizer knows only <|bos|>")
        return BOS

    def get_vocab_size(self) -> int:
        return BOS + 1

    def encode(self, text, prepend=None, append=None, num_threads: int = 8):
        if not isinstance(text, str):
            return [self.encode(t, prepend, append) for t in text]
        special = {None: [], "<|bos|>": [BOS]}
        head = special[prepend] if prepend is None or isinstance(prepend, str) else [prepend]
        tail = special[append] if append is None or isinstance(append, str) else [append]
        return head + self.ids[text] + tail


def write_shards(base_dir: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nanochat.dataset import index_to_filename

    data_dir = os.path.join(base_dir, "base_data")
    os.makedirs(data_dir)
    per_file = GROUPS * ROWS
    for f in range(FILES):
        sink = io.BytesIO()
        texts = [doc_text(f * per_file + i) for i in range(per_file)]
        pq.write_table(pa.table({"text": texts}), sink, row_group_size=ROWS)
        with open(os.path.join(data_dir, index_to_filename(f)), "wb") as out:
            out.write(sink.getvalue())


@contextmanager
def environment(base_dir: str, rank: int = 0, world_size: int = 1):
    """$NANOCHAT_BASE_DIR at the check's shards and torchrun's rank variables (none for a single process)."""
    names = ("NANOCHAT_BASE_DIR", "RANK", "LOCAL_RANK", "WORLD_SIZE")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["NANOCHAT_BASE_DIR"] = base_dir
    for k in names[1:]:
        os.environ.pop(k, None)
    if world_size > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------------------------------------------------------
# _resume_position

def _state(rank, world_size, source="shards", rg_idx=3):
    return {"source": source, "epoch": 2, "pq_idx": 1, "rg_idx": rg_idx, "doc_idx": 2, "tok_idx": 5,
            "rank": rank, "world_size": world_size}


# (what the case is, state, rank, world_size, what a wrong answer usually means)
RESUME_CASES = (
    ("no saved state", None, 1, 2, "without a state, rank r starts at (epoch 0, file 0, row group r, 0, 0)"),
    ("this rank's own state", _state(1, 2), 1, 2, None),
    ("another rank's state", _state(0, 2, rg_idx=2), 1, 2,
     "another rank's state is resumed as if it were this rank's: move to this rank's row group of the next round"),
    ("a state from another world size", _state(1, 4, rg_idx=5), 1, 2,
     "a state from another world size must move to this rank's row group of the next round"),
    ("a state for other data", _state(1, 2, source="embedded"), 1, 2,
     "a state saved for other data must be ignored: start from the beginning"),
)


def _own_state_mistake(got: tuple, want: tuple) -> str:
    if got == (0, 0, 1, 0, 0):
        return "resume restarts from the beginning: a state of this rank names exactly where to go on"
    if got[:3] == want[:3]:
        return "resumes in the right row group but not at the document and token the state names"
    return "a state of this rank must give back exactly its (epoch, pq_idx, rg_idx, doc_idx, tok_idx)"


def probe_resume_position(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["_resume_position"]
    for what, state, rank, world_size, why in RESUME_CASES:
        want = tuple(reference._resume_position(state, "shards", rank, world_size))
        got, failed = attempt(ex, learner, learner._resume_position, None if state is None else dict(state),
                              "shards", rank, world_size)
        if failed:
            return failed
        try:
            got = tuple(int(v) for v in got)
        except (TypeError, ValueError):
            return mismatch(ex, f"{what}: returned {got!r}, not five ints (epoch, pq_idx, rg_idx, doc_idx, tok_idx)")
        if got != want:
            why = why or _own_state_mistake(got, want)
            return mismatch(ex, f"{what} (rank {rank} of {world_size}): got {got}, the reference {want} — {why}")
    return passed(ex, f"all {len(RESUME_CASES)} cases: start, own state, other rank, other world size, other data")


# ---------------------------------------------------------------------------------------------------------------
# _documents

# (split, rank, world_size, start position, how many documents)
DOCUMENT_CASES = (
    ("train", 0, 1, (0, 0, 0, 0, 0), 30),
    ("train", 1, 2, (0, 0, 1, 0, 0), 30),
    ("train", 2, 3, (2, 1, 2, 1, 0), 20),
    ("val", 1, 4, (0, 0, 1, 0, 0), 10),
)


def take_documents(fn, split, rank, world_size, position, n):
    documents = fn(split, "shards", rank, world_size, position)
    return [(tuple(int(v) for v in key), text) for key, text in islice(documents, n)]


def _documents_mistake(got, want, reference, case) -> str:
    split, rank, world_size, position, n = case
    where = f"{split}, rank {rank} of {world_size}, from {position}"
    if len(got) < len(want):
        return (f"{where}: the generator stopped after {len(got)} documents; after the last row group the next "
                "epoch starts (epoch + 1, this rank's first row group)")
    foreign = [g for g in map(row_group_of, (t for _, t in got)) if g is not None and g % world_size != rank]
    if foreign:
        return (f"{where}: reads row group {foreign[0]}, which is rank {foreign[0] % world_size}'s: rank r reads "
                "row groups r, r + world_size, ... (or every rank reads the same documents)")
    i = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
    (gk, gt), (wk, wt) = got[i], want[i]
    if i == 0 and position != (0, 0, rank, 0, 0) and gt != wt:
        return f"{where}: the first document is {gt!r}, the reference's {wt!r} — resume must start at `position`"
    if gt == wt:
        return f"{where}: document {i} has key {gk}, the reference {wk} (epoch, pq_idx, rg_idx, doc_idx)"
    return f"{where}: document {i} is {gt!r} {gk}, the reference's {wt!r} {wk}"


def probe_documents(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["_documents"]
    for case in DOCUMENT_CASES:
        want = take_documents(reference._documents, *case)
        got, failed = attempt(ex, learner, take_documents, learner._documents, *case)
        if failed:
            return failed
        if got != want:
            return mismatch(ex, _documents_mistake(got, want, reference, case))
    return passed(ex, "ranks 1-3 of 1-4, resumed mid-file, across epochs: the reference's documents and keys")


# ---------------------------------------------------------------------------------------------------------------
# _advance

def _queue():
    return deque([[(0, 0, 0, 0), [BOS] + doc_ids(3)[:4], 2], [(0, 0, 0, 1), [BOS] + doc_ids(4)[:3], 0],
                  [(0, 0, 0, 2), [BOS] + doc_ids(5)[:5], 0]])


ADVANCE_STEPS = (0, 1, 3, 7, 8, 12)  # 3 and 7 use a document up exactly; the queue holds 3 + 4 + 6 tokens


def _snapshot(chunks) -> list:
    return [(key, list(tokens), start) for key, tokens, start in chunks]


def run_advance(fn, n):
    chunks = _queue()
    returned = fn(chunks, n)
    return _snapshot(chunks), returned


def _advance_mistake(got, want, n) -> str:
    if got == _snapshot(_queue()) and n:
        return f"consuming {_tokens(n)} left the queue unchanged: change `chunks` in place (popleft, start += ...)"
    if len(got) == len(want) + 1 and got[0][2] == len(got[0][1]):
        return (f"consuming {_tokens(n)}: a document used up exactly stays at the front of the queue with nothing "
                "left; drop it, so the state names the document holding the next unread token")
    left_got = sum(len(t) - s for _, t, s in got)
    left_want = sum(len(t) - s for _, t, s in want)
    if left_got != left_want:
        return f"consuming {_tokens(n)} left {left_got} unread, the reference {left_want}: count each token once"
    return f"consuming {_tokens(n)}: the queue is {got}, the reference's {want}"


def _tokens(n: int) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


def probe_advance(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["_advance"]
    for n in ADVANCE_STEPS:
        want, _ = run_advance(reference._advance, n)
        result, failed = attempt(ex, learner, run_advance, learner._advance, n)
        if failed:
            return failed
        got, _ = result
        if got != want:
            return mismatch(ex, _advance_mistake(got, want, n))
    return passed(ex, f"consumed {', '.join(map(str, ADVANCE_STEPS))} tokens of a 3-document queue like the reference")


# ---------------------------------------------------------------------------------------------------------------
# the packing loader

# (what the case is, rank, world_size, resume after this many of the reference's batches, batches to compare)
LOADER_CASES = (
    ("one process", 0, 1, None, 16),
    ("rank 1 of 2", 1, 2, None, 12),
    ("resumed after batch 5", 0, 1, 5, 10),
)


def take_batches(fn, n, resume=None):
    """n (inputs, targets, state) from a loader function, as plain values (lists, dtype names, dicts); documents
    are tokenized three at a time, so the loader refills its queue many times."""
    loader = fn(B, T, "train", tokenizer_threads=1, tokenizer_batch_size=3, resume_state_dict=resume,
                source="shards", tokenizer=DocTokenizer())
    out = []
    for item in islice(loader, n):
        if not (isinstance(item, (tuple, list)) and len(item) == 3 and all(hasattr(t, "shape") for t in item[:2])):
            return {"malformed": f"yields {type(item).__name__} {str(item)[:60]}; a batch is (inputs, targets, "
                                 "state): two (B, T) tensors and a dict"}
        inputs, targets, state = item
        out.append({"shape": (tuple(inputs.shape), tuple(targets.shape)),
                    "dtype": (str(inputs.dtype), str(targets.dtype)),
                    "inputs": inputs.tolist(), "targets": targets.tolist(), "state": dict(state)})
    return out


def flat(rows: list) -> list:
    return [t for row in rows for t in row]


def stream(batches: list) -> list:
    """The token stream the batches train on: the first input, then every target (batches overlap by one)."""
    return flat(batches[0]["inputs"])[:1] + [t for b in batches for t in flat(b["targets"])]


def _form_mistake(batches: list) -> str | None:
    """What is wrong with the batches on their own: shapes, dtype, the shift, how rows and batches join."""
    for k, b in enumerate(batches):
        if b["shape"] != ((B, T), (B, T)):
            return f"batch {k} has shapes {b['shape']}: inputs and targets are both (B, T) = ({B}, {T})"
        if b["dtype"] != ("torch.int64", "torch.int64"):
            return f"batch {k} holds {b['dtype']}: token ids are LongTensors (torch.int64), as the embedding needs"
        ins, tgs = flat(b["inputs"]), flat(b["targets"])
        if ins == tgs:
            return "targets are the inputs themselves: targets must be the inputs shifted by one (the next token)"
        if ins[1:] != tgs[:-1]:
            if all(i[1:] == t[:-1] for i, t in zip(b["inputs"], b["targets"])):
                return ("each row is cut from its own T + 1 tokens, so rows do not continue each other: cut one "
                        "window of B*T + 1 tokens and view it as (B, T)")
            return "targets are not the inputs shifted by one: targets[b, t] must be the token after inputs[b, t]"
        if k and ins[0] != batches[k - 1]["targets"][-1][-1]:
            return (f"batch {k} does not start with batch {k - 1}'s last target: consume B*T tokens of each window "
                    "of B*T + 1, so the last one is the first input of the next batch (no token lost or repeated)")
    return None


def _content_mistake(got: list, want: list) -> str:
    mine, theirs = stream(got), stream(want)
    if BOS in theirs and BOS not in mine:
        return "no <|bos|> in front of the documents: prepend the BOS id to every document's tokens"
    i = next(i for i, (g, w) in enumerate(zip(mine, theirs)) if g != w)
    where = f"token {i} of the stream is {describe(mine[i])}, the reference's {describe(theirs[i])}"
    if mine[i] in theirs[i:]:
        return f"{where}: {theirs[i:].index(mine[i])} tokens were dropped (leftover tokens carry over to the next row)"
    if mine[i] in theirs[:i]:
        return f"{where}: tokens already used come again (leftover tokens must be used once)"
    return where


def _loader_mistake(got: list, want: list, wrong: list, why: str | None) -> str:
    form = _form_mistake(got)
    if form:
        return form
    if len(got) < len(want):
        return f"the loader stopped after {len(got)} batches: it should run forever, epoch after epoch"
    if why and stream(got) == stream(wrong[:len(got)]) and stream(wrong) != stream(want):
        return why
    if stream(got) != stream(want):
        return _content_mistake(got, want)
    k = next(k for k, (g, w) in enumerate(zip(got, want)) if g["state"] != w["state"])
    return f"the state after batch {k} is {got[k]['state']}, the reference's {want[k]['state']}"


def _loader_case(reference: ModuleType, base: str, case) -> tuple[list, list, dict | None, str | None]:
    """(the reference's batches, a well-known wrong answer, the state to resume from, what that wrong one means)."""
    what, rank, world_size, resume_after, n = case
    with environment(base, rank, world_size):
        if resume_after is None:
            want = take_batches(reference.tokenizing_distributed_data_loader_with_state, n)
        else:
            full = take_batches(reference.tokenizing_distributed_data_loader_with_state, resume_after + n)
            return full[resume_after:], full[:n], full[resume_after - 1]["state"], \
                "resume restarts from the beginning: start where the state says"
    if world_size == 1:
        return want, [], None, None
    with environment(base):
        single = take_batches(reference.tokenizing_distributed_data_loader_with_state, n)
    return want, single, None, "every rank reads the same documents: pass this rank and world size on"


HELPERS = ("_resume_position", "_documents", "_advance")


@contextmanager
def reference_helpers(learner: ModuleType, reference: ModuleType):
    """The learner's module calls the reference's helpers for a while (the loader is checked on its own)."""
    saved = {name: getattr(learner, name) for name in HELPERS if hasattr(learner, name)}
    for name in HELPERS:
        setattr(learner, name, getattr(reference, name))
    try:
        yield
    finally:
        for name in HELPERS:
            if name in saved:
                setattr(learner, name, saved[name])
            else:
                delattr(learner, name)


def probe_loader(learner: ModuleType, reference: ModuleType, base: str) -> Component:
    ex = EX["tokenizing_distributed_data_loader_with_state"]
    for case in LOADER_CASES:
        what, rank, world_size, _, n = case
        want, wrong, resume, why = _loader_case(reference, base, case)
        with environment(base, rank, world_size), reference_helpers(learner, reference):
            got, failed = attempt(ex, learner, take_batches, learner.tokenizing_distributed_data_loader_with_state,
                                  n, resume=resume)
        if failed:
            return failed
        if isinstance(got, dict):
            return mismatch(ex, got["malformed"])
        if got != want:
            return mismatch(ex, f"{what}: {_loader_mistake(got, want, wrong, why)}")
    return passed(ex, f"(B, T) = ({B}, {T}) batches and states: one process, rank 1 of 2, resumed mid-document")


# ---------------------------------------------------------------------------------------------------------------

def check(learner: ModuleType, reference: ModuleType) -> list[Component]:
    """One row per exercise, in the order the learner writes them."""
    base = tempfile.mkdtemp(prefix="wb-data-")
    try:
        write_shards(base)
        with environment(base):
            rows = [probe_resume_position(learner, reference), probe_documents(learner, reference),
                    probe_advance(learner, reference)]
        return rows + [probe_loader(learner, reference, base)]
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""The pretraining data loader: documents in, (inputs, targets) token batches out, on every rank, forever.

Each rank reads its own share of the row groups (see `nanochat.dataset.row_groups`), tokenizes documents in
batches (tiktoken, several threads) with <|bos|> in front of each, and appends them to one long token stream.
Each step cuts B*T + 1 consecutive tokens from the stream: inputs are the first B*T, targets the same shifted by
one. Consecutive batches overlap by one token (the last target of a batch is the first input of the next), so
every token of the stream except the very first is predicted exactly once. Documents run across row boundaries:
<|bos|> tells the model where a new one starts. After the last row group the loader starts the next epoch.

Resuming is exact. The state after a batch names the document holding the next unread token: (epoch, pq_idx,
rg_idx, doc_idx) plus tok_idx, that token's position within the document's tokens. A loader started from that
state yields the very batches an uninterrupted loader would have yielded next. The state also records the rank
and world size; given another rank's state (or one from a different world size), the loader resumes
approximately: at this rank's first row group of the next round after the recorded one, in the same file.
The state is a small dict of ints and strings, ready for a checkpoint's JSON metadata.
"""

import sys
from collections import deque
from itertools import chain, islice

import numpy as np
import torch

from nanochat import dataset
from nanochat.common import get_dist_info


def _resume_position(state: dict | None, source: str, rank: int, world_size: int):
    """(epoch, pq_idx, rg_idx, doc_idx, tok_idx) to start from, given a saved state (or None for the start)."""
    if state is None:
        return 0, 0, rank, 0, 0
    if state.get("source") != source:
        print(f"note: the loader state is for the {state.get('source')!r} data but {source!r} is in use; "
              "starting from the beginning", file=sys.stderr)
        return 0, 0, rank, 0, 0
    epoch, pq_idx, rg_idx = int(state["epoch"]), int(state["pq_idx"]), int(state["rg_idx"])
    if state.get("rank") == rank and state.get("world_size") == world_size:
        return epoch, pq_idx, rg_idx, int(state["doc_idx"]), int(state["tok_idx"])
    # another rank's (or another world size's) position: skip to this rank's row group in the next round
    next_round = rg_idx // world_size + 1
    return epoch, pq_idx, next_round * world_size + rank, 0, 0


def _documents(split: str, source: str, rank: int, world_size: int, position):
    """Yield ((epoch, pq_idx, rg_idx, doc_idx), text) forever, starting at `position`, epoch after epoch."""
    epoch, pq_idx, rg_idx, doc_idx, _ = position
    resume_at = (pq_idx, rg_idx)
    while True:
        yielded = False
        for p, r, docs in dataset.row_groups(split, rank, world_size, source, resume_at=resume_at):
            first = doc_idx if (p, r) == resume_at else 0
            for d in range(first, len(docs)):
                yielded = True
                yield (epoch, p, r, d), docs[d]
        if not yielded and resume_at == (0, rank):
            raise RuntimeError(
                f"rank {rank} of {world_size} gets no documents from the {split!r} split of the {source} data "
                "(fewer row groups than ranks): download more shards or use fewer ranks"
            )
        epoch, resume_at, doc_idx = epoch + 1, (0, rank), 0


def _advance(chunks: deque, n: int) -> None:
    """Mark the first `n` unconsumed tokens of `chunks` as consumed, in place: documents used up are dropped from
    the front, and the first one left (the one holding the next unread token) has its start moved forward."""
    while n:
        chunk = chunks[0]
        left = len(chunk[1]) - chunk[2]
        if left <= n:
            chunks.popleft()
            n -= left
        else:
            chunk[2] += n
            n = 0


def tokenizing_distributed_data_loader_with_state(
    B: int,
    T: int,
    split: str,
    tokenizer_threads: int = 4,
    tokenizer_batch_size: int = 128,
    device="cpu",
    resume_state_dict: dict | None = None,
    source: str = "auto",
    tokenizer=None,
):
    """Yield (inputs, targets, state_dict) forever: LongTensors of shape (B, T) on `device`.

    `source` is "auto" (shards if downloaded, else the embedded corpus), "shards" or "embedded". `tokenizer`
    defaults to `nanochat.tokenizer.get_tokenizer()`. Pass a yielded state_dict as `resume_state_dict` to continue.
    """
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'val'")
    if B < 1 or T < 1:
        raise ValueError(f"batch size and sequence length must be positive, got B={B}, T={T}")
    if tokenizer is None:
        from nanochat.tokenizer import get_tokenizer

        tokenizer = get_tokenizer()
    bos = tokenizer.get_bos_token_id()
    source = dataset.resolve_source(source)
    _, rank, _, world_size = get_dist_info()
    device = torch.device(device)
    pin = device.type == "cuda"

    position = _resume_position(resume_state_dict, source, rank, world_size)
    documents = _documents(split, source, rank, world_size, position)
    skip_tokens = position[4]  # tokens of the first document already consumed before the resume
    chunks = deque()  # [key, tokens, start]: a document's tokens, of which tokens[start:] are not consumed yet
    available = 0
    needed = B * T + 1

    while True:
        while available < needed:  # refill: tokenize the next batch of documents
            batch = list(islice(documents, tokenizer_batch_size))
            token_lists = tokenizer.encode([text for _, text in batch], prepend=bos, num_threads=tokenizer_threads)
            for (key, _), tokens in zip(batch, token_lists):
                start = min(skip_tokens, len(tokens))
                skip_tokens = 0
                chunks.append([key, tokens, start])
                available += len(tokens) - start
        window = np.fromiter(chain.from_iterable(t[s:] for _, t, s in chunks), dtype=np.int64, count=needed)
        # consume B*T tokens; the last token of the window stays as the first input of the next batch
        _advance(chunks, B * T)
        available -= B * T
        (epoch, pq_idx, rg_idx, doc_idx), _, tok_idx = chunks[0]
        state = {
            "source": source, "epoch": epoch, "pq_idx": pq_idx, "rg_idx": rg_idx, "doc_idx": doc_idx,
            "tok_idx": tok_idx, "rank": rank, "world_size": world_size,
        }
        scratch = torch.from_numpy(window)  # a fresh buffer each step, so an async copy never sees it overwritten
        if pin:
            scratch = scratch.pin_memory()
        inputs = scratch[:-1].view(B, T).to(device, non_blocking=pin)
        targets = scratch[1:].view(B, T).to(device, non_blocking=pin)
        yield inputs, targets, state


def tokenizing_distributed_data_loader(*args, **kwargs):
    """Like `tokenizing_distributed_data_loader_with_state`, yielding (inputs, targets) only."""
    for inputs, targets, _ in tokenizing_distributed_data_loader_with_state(*args, **kwargs):
        yield inputs, targets

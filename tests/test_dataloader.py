"""The tokenizing distributed data loader: shapes, the token stream, ranks, epochs and exact resume."""

import io
from itertools import chain, cycle, islice

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pydoc_data.topics import topics

from nanochat import embedded_corpus
from nanochat.dataloader import tokenizing_distributed_data_loader, tokenizing_distributed_data_loader_with_state
from nanochat.dataset import index_to_filename
from nanochat.tokenizer import RustBPETokenizer

DOCS_PER_FILE, ROWS_PER_GROUP = 12, 3


@pytest.fixture(scope="module")
def tok():
    return RustBPETokenizer.train_from_iterator(iter(sorted(topics.values())[:40]), 400)


def doc(file, i):
    return f"File {file}, document {i}. " + "The quick brown fox jumps over the lazy dog. " * (i % 4 + 1)


@pytest.fixture
def shards(tmp_path, monkeypatch):
    """Three shards (two train, one val) of 12 documents in row groups of 3, in a fresh base dir."""
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    (tmp_path / "base_data").mkdir()
    for f in range(3):
        sink = io.BytesIO()
        pq.write_table(pa.table({"text": [doc(f, i) for i in range(DOCS_PER_FILE)]}), sink, row_group_size=ROWS_PER_GROUP)
        (tmp_path / "base_data" / index_to_filename(f)).write_bytes(sink.getvalue())


def set_rank(monkeypatch, rank, world_size):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))


def train_docs_of_rank(rank, world_size, files=(0, 1)):
    """The training documents a rank should read, in order: its row groups rank, rank + world_size, ..."""
    groups = range(0, DOCS_PER_FILE // ROWS_PER_GROUP)
    return [doc(f, g * ROWS_PER_GROUP + j) for f in files for g in groups if g % world_size == rank for j in range(ROWS_PER_GROUP)]


def expected_stream(tok, docs, n):
    """The first n tokens of <|bos|> + doc, <|bos|> + doc, ... over the documents, epoch after epoch."""
    bos = tok.get_bos_token_id()
    return list(islice(chain.from_iterable([bos] + tok.encode(d) for d in cycle(docs)), n))


def token_stream(batches):
    """The loader's token stream: the first input, then every target (batches overlap by one token)."""
    batches = list(batches)
    return [batches[0][0][0, 0].item()] + [t for b in batches for t in b[1].flatten().tolist()]


def test_shapes_dtype_and_shift(tok):
    loader = tokenizing_distributed_data_loader(2, 16, "train", tokenizer=tok, source="embedded")
    batches = list(islice(loader, 3))
    for inputs, targets in batches:
        assert inputs.shape == targets.shape == (2, 16)
        assert inputs.dtype == targets.dtype == torch.long and inputs.device.type == "cpu"
        assert torch.equal(inputs.flatten()[1:], targets.flatten()[:-1])  # targets are inputs shifted by one
    for (_, prev_targets), (next_inputs, _) in zip(batches, batches[1:]):
        assert next_inputs[0, 0] == prev_targets[-1, -1]  # consecutive batches continue the same stream


def test_stream_is_every_document_after_bos_in_order_across_epochs(tok, shards):
    B, T = 2, 32
    docs = train_docs_of_rank(0, 1)
    epoch_tokens = sum(len(tok.encode(d)) + 1 for d in docs)
    n_batches = epoch_tokens // (B * T) * 2 + 3  # a little over two epochs
    batches = list(islice(tokenizing_distributed_data_loader_with_state(B, T, "train", tokenizer=tok, source="shards"), n_batches))
    stream = token_stream(batches)
    assert stream == expected_stream(tok, docs, len(stream))
    assert {state["epoch"] for _, _, state in batches} == {0, 1, 2}
    # every document begins with <|bos|>: cutting the stream at <|bos|> gives the documents back
    bos = tok.get_bos_token_id()
    pieces = tok.decode(stream).split("<|bos|>")
    assert stream[0] == bos and pieces[1 : len(docs) + 1] == docs


def test_val_split_reads_the_last_shard(tok, shards):
    batches = list(islice(tokenizing_distributed_data_loader(1, 64, "val", tokenizer=tok, source="auto"), 4))
    stream = token_stream(batches)
    assert stream == expected_stream(tok, [doc(2, i) for i in range(DOCS_PER_FILE)], len(stream))


def test_two_ranks_read_different_row_groups(tok, shards, monkeypatch):
    streams = []
    for rank in (0, 1):
        set_rank(monkeypatch, rank, 2)
        batches = list(islice(tokenizing_distributed_data_loader_with_state(2, 16, "train", tokenizer=tok), 6))
        assert all(state["rank"] == rank and state["world_size"] == 2 for _, _, state in batches)
        stream = token_stream(batches)
        assert stream == expected_stream(tok, train_docs_of_rank(rank, 2), len(stream))
        streams.append(stream)
    assert streams[0] != streams[1]
    assert not set(train_docs_of_rank(0, 2)) & set(train_docs_of_rank(1, 2))


@pytest.mark.parametrize("source", ["shards", "embedded"])
def test_resume_yields_exactly_the_continuation(tok, shards, source):
    B, T, n = 2, 24, 40  # with the shards, 40 batches span several epochs
    loader = lambda state=None: tokenizing_distributed_data_loader_with_state(  # noqa: E731
        B, T, "train", tokenizer=tok, source=source, resume_state_dict=state
    )
    reference = list(islice(loader(), n))
    for k in (0, 5, 17, 33):
        state = reference[k][2]
        assert set(state) >= {"pq_idx", "rg_idx", "doc_idx", "tok_idx", "epoch"} and state["source"] == source
        resumed = list(islice(loader(dict(state)), n - k - 1))
        for (x, y, s), (rx, ry, rs) in zip(reference[k + 1 :], resumed):
            assert torch.equal(x, rx) and torch.equal(y, ry) and s == rs


def test_another_ranks_state_resumes_at_the_next_round(tok, shards, monkeypatch):
    set_rank(monkeypatch, 0, 2)
    state = next(tokenizing_distributed_data_loader_with_state(1, 8, "train", tokenizer=tok))[2]
    assert (state["pq_idx"], state["rg_idx"]) == (0, 0)
    set_rank(monkeypatch, 1, 2)
    inputs, _, _ = next(tokenizing_distributed_data_loader_with_state(1, 8, "train", tokenizer=tok, resume_state_dict=state))
    # rank 1 skips its round-0 row group (1) and starts at row group 3 of file 0
    assert inputs[0].tolist() == expected_stream(tok, [doc(0, 3 * ROWS_PER_GROUP)], 8)


def test_a_state_for_other_data_starts_over(tok, shards, capsys):
    state = {"source": "embedded", "epoch": 0, "pq_idx": 0, "rg_idx": 5, "doc_idx": 0, "tok_idx": 0, "rank": 0, "world_size": 1}
    inputs, _ = next(tokenizing_distributed_data_loader(1, 8, "train", tokenizer=tok, source="shards", resume_state_dict=state))
    assert inputs[0].tolist() == expected_stream(tok, [doc(0, 0)], 8)
    assert "starting from the beginning" in capsys.readouterr().err


def test_a_rank_with_no_data_is_a_clear_error(tok, shards, monkeypatch):
    set_rank(monkeypatch, 5, 6)  # the val shard has 4 row groups: ranks 4 and 5 get none
    with pytest.raises(RuntimeError, match="rank 5 of 6 gets no documents"):
        next(tokenizing_distributed_data_loader(1, 8, "val", tokenizer=tok))


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="unknown split"):
        next(tokenizing_distributed_data_loader(1, 8, "test", tokenizer=tok))
    with pytest.raises(ValueError, match="must be positive"):
        next(tokenizing_distributed_data_loader(0, 8, "train", tokenizer=tok))


def test_defaults_use_the_embedded_corpus_and_tokenizer():
    """No shards and no tokenizer argument: the session's embedded tokenizer over the embedded corpus."""
    inputs, targets, state = next(tokenizing_distributed_data_loader_with_state(8, 512, "train"))
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    assert inputs.shape == (8, 512) and state["source"] == "embedded"
    first_doc = embedded_corpus.split("train")[0]
    assert inputs[0, :20].tolist() == expected_stream(tokenizer, [first_doc], 20)
    assert int(inputs.max()) < tokenizer.get_vocab_size()

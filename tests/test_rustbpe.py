"""Tests for the Rust BPE trainer `rustbpe`: merges, splitting, encoding and bad input.

The merges are checked against a small BPE written here in plain Python (recount every pair at every
step), on random and adversarial corpora; the built-in GPT-4 scanner is checked against the regex it
replaces (fancy-regex inside the crate, and Python's `regex` module on common characters); encoding is
checked against tiktoken built from the learned ranks.
"""

import json
import subprocess
import sys
from collections import Counter

import pytest
import regex
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rustbpe

GPT4 = rustbpe.GPT4_PATTERN
NANOCHAT = GPT4.replace(r"\p{N}{1,3}", r"\p{N}{1,2}")
PATTERNS = [GPT4, NANOCHAT, r"\w+|[^\w\s]+|\s+"]  # the last one runs through fancy-regex

# Pieces of text that exercise every alternative of the GPT-4 pattern.
PALETTE = [
    "a", "b", "ab", "the", " the", "The", "THE", "é", "e\u0301", "\u0301", "ß", "ſ", "字", "漢字", "日本語",
    "'s", "'S", "'ll", "'LL", "'ve", "'re", "'d", "'m", "'t", "'x", "'", "0", "7", "42", "1234567", "٣", "½",
    "²", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000", "\u2028", "\u0085",
    ".", ",", "!", "?!", "...", "-", "—", "(", ")", "$", "😀", "👍🏽", "👨\u200d👩\u200d👧", "\u200d", "\x00",
    "ﬁ", "Ω", " world", "hello", "aaaa", "aaaaaaa",
]

texts_strategy = st.lists(
    st.lists(st.one_of(st.sampled_from(PALETTE), st.text(max_size=4)), max_size=30).map("".join),
    min_size=0,
    max_size=12,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# a plain-Python reference BPE


def reference_merges(texts, vocab_size, pattern):
    """Byte-level BPE the slow, obvious way: count every adjacent pair, merge the most frequent
    (ties: the smallest pair), recount, repeat."""
    chunk_counts = Counter()
    for text in texts:
        chunk_counts.update(rustbpe.split_text(text, pattern, engine="regex"))
    words = [(list(chunk.encode("utf-8")), n) for chunk, n in chunk_counts.items()]
    merges = []
    while 256 + len(merges) < vocab_size:
        pairs = Counter()
        for ids, n in words:
            for pair in zip(ids, ids[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        new_id = 256 + len(merges)
        merges.append(best)
        for k, (ids, n) in enumerate(words):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[k] = (out, n)
    return merges


def trained(texts, vocab_size, pattern=None, **kw):
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), vocab_size, pattern=pattern, **kw)
    return tok


def tiktoken_for(tok):
    return tiktoken.Encoding(
        name="test", pat_str=tok.get_pattern(), mergeable_ranks=dict(tok.get_mergeable_ranks()), special_tokens={}
    )


# ---------------------------------------------------------------------------------------------
# merges


@FAST
@given(texts=texts_strategy, extra=st.integers(0, 60), pattern=st.sampled_from(PATTERNS))
def test_merges_match_the_reference(texts, extra, pattern):
    tok = trained(texts, 256 + extra, pattern)
    assert tok.get_merges() == reference_merges(texts, 256 + extra, pattern)
    assert tok.vocab_size == 256 + len(tok.get_merges())


@pytest.mark.parametrize(
    "texts",
    [
        ["aaaaaaaaaa", "aaa", "aaaaa aaaaaaa"],  # overlapping pairs of one byte
        ["ab ab ab ba ba ba", "abab baba"],  # every pair ties
        ["😀😀😀😀 😀😀", "👍🏽👍🏽👍🏽"],  # multi-byte characters that repeat
        ["line one\r\nline two\r\n\r\n", "\r\n\r\n\r\n  \n\n"],  # line breaks
        ["1234567890 0000000 12 123 1234", "٣٣٣٣ ½½"],  # digit runs
        ["漢字漢字 日本語の文章です。", "e\u0301e\u0301e\u0301 cafe\u0301"],  # CJK, combining marks
        ["supercalifragilisticexpialidocious " * 3, "antidisestablishmentarianism"],  # chunks over 15 bytes
        ["x" * 15, "y" * 16, "z" * 17],  # around the packed-key limit
        ["a\x00a\x00 a\x00"],  # NUL bytes inside chunks
    ],
)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_merges_match_the_reference_on_adversarial_corpora(texts, pattern):
    tok = trained(texts, 256 + 80, pattern)
    assert tok.get_merges() == reference_merges(texts, 256 + 80, pattern)


def test_a_big_document_is_split_in_parallel_pieces_without_changing_the_result():
    # Documents over 256 KB are cut at line breaks and counted in parallel: the merges must not change.
    words = ["alpha", "beta", "gamma", "délta", "1234", "it's", "—", "字"]
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(i % 9 + 1)) for i in range(30000)]
    big = "\n".join(lines)
    assert len(big.encode()) > 600_000
    one = trained([big], 256 + 40)
    assert len(one.get_merges()) > 20  # (the corpus runs out of pairs at 32)
    assert one.get_merges() == reference_merges([big], 256 + 40, GPT4)


@pytest.mark.parametrize("buffer_size", [1, 2, 5, 8192])
def test_buffer_size_does_not_change_the_merges(buffer_size):
    texts = [f"document {i}: the quick brown fox {i * 37} jumps\n" * (i % 5 + 1) for i in range(40)]
    tok = trained(texts, 300, buffer_size=buffer_size)
    assert tok.get_merges() == reference_merges(texts, 300, GPT4)


def test_mergeable_ranks_spell_the_merges():
    tok = trained(["hello hello help helium"], 262)
    ranks = tok.get_mergeable_ranks()
    assert [i for _, i in ranks] == list(range(tok.vocab_size))
    assert ranks[:256] == [(bytes([b]), b) for b in range(256)]
    vocab = {i: b for b, i in ranks}
    for k, (a, b) in enumerate(tok.get_merges()):
        assert vocab[256 + k] == vocab[a] + vocab[b]
    assert tok.get_merges() == reference_merges(["hello hello help helium"], 262, GPT4)


def test_training_stops_when_no_pair_is_left():
    tok = trained(["ab", "ab"], 10_000)
    assert tok.get_merges() == [(97, 98)]
    assert tok.vocab_size == 257


def test_empty_corpus_gives_the_256_byte_tokenizer():
    tok = trained([], 4096)
    assert tok.vocab_size == 256
    assert tok.get_mergeable_ranks() == [(bytes([b]), b) for b in range(256)]
    assert tok.encode("hé") == list("hé".encode())
    tok = trained(["", "x", "y"], 4096)  # no chunk has two bytes
    assert tok.vocab_size == 256


def test_default_pattern_is_gpt4():
    tok = trained(["x"], 256)
    assert tok.get_pattern() == GPT4
    assert trained(["x"], 256, NANOCHAT).get_pattern() == NANOCHAT


def test_retraining_replaces_the_previous_state():
    tok = trained(["aaaa"], 300)
    tok.train_from_iterator(["bbbb cccc"], 258, pattern=r"\w+")
    assert tok.get_merges() == reference_merges(["bbbb cccc"], 258, r"\w+")
    assert tok.get_pattern() == r"\w+"


# ---------------------------------------------------------------------------------------------
# progress


def test_progress_is_reported_from_zero_to_the_end():
    calls = []
    texts = ["the cat sat on the mat with the hat " * 20, "a quick brown fox"] * 5
    tok = trained(texts, 256 + 50, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 50)
    assert calls[-1][0] == calls[-1][1] == len(tok.get_merges())
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_an_exception_in_progress_stops_training_and_keeps_the_old_state():
    tok = trained(["hello hello"], 258)
    before = tok.get_merges()

    def progress(done, total):
        if done >= 3:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt, match="stop"):
        tok.train_from_iterator(["some other text, quite different"] * 10, 300, progress=progress)
    assert tok.get_merges() == before


# ---------------------------------------------------------------------------------------------
# the split pattern


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40) | st.lists(st.sampled_from(PALETTE), max_size=30).map("".join),
       pattern=st.sampled_from([GPT4, NANOCHAT, GPT4.replace("{1,3}", "{1,1}")]))
def test_the_scanner_splits_exactly_like_the_regex(text, pattern):
    assert rustbpe.uses_fast_splitter(pattern)
    chunks = rustbpe.split_text(text, pattern)
    assert chunks == rustbpe.split_text(text, pattern, engine="regex")
    assert "".join(chunks) == text


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.sampled_from(PALETTE), max_size=30).map("".join))
def test_the_scanner_agrees_with_pythons_regex_module(text):
    # an independent implementation of the same pattern (on characters both know well)
    assert rustbpe.split_text(text) == regex.findall(GPT4, text)
    assert rustbpe.split_text(text, NANOCHAT) == regex.findall(NANOCHAT, text)


def test_split_examples():
    assert rustbpe.split_text("Hello world's  123456 \r\n\n  x") == [
        "Hello", " world", "'s", " ", " ", "123", "456", " \r\n\n", " ", " x"
    ]
    assert rustbpe.split_text("12345", NANOCHAT) == ["12", "34", "5"]
    assert not rustbpe.uses_fast_splitter(r"\w+")


# ---------------------------------------------------------------------------------------------
# encoding


@FAST
@given(train=texts_strategy, text=st.text(max_size=60) | st.lists(st.sampled_from(PALETTE), max_size=30).map("".join),
       pattern=st.sampled_from(PATTERNS))
def test_encode_matches_tiktoken_and_round_trips(train, text, pattern):
    tok = trained(train + ["the theme of the thesis"], 256 + 40, pattern)
    ids = tok.encode(text)
    assert ids == tiktoken_for(tok).encode_ordinary(text)
    # the regex-only pattern can leave characters out of every chunk; the GPT-4 family covers all text
    if pattern != PATTERNS[2]:
        assert tok.decode(ids) == text
    assert tok.batch_encode([text, text[:5]]) == [ids, tok.encode(text[:5])]


def test_encode_matches_tiktoken_on_longer_text():
    corpus = [f"Chapter {i}. It's the {i}th time they've met; the rain fell.\n" * 3 for i in range(300)]
    tok = trained(corpus, 600)
    text = "".join(corpus[::7]) * 3  # over the size where encode releases the GIL
    assert len(text) > 4096
    assert tok.encode(text) == tiktoken_for(tok).encode_ordinary(text)


def test_decode_errors():
    tok = trained(["abc"], 257)
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([10**6])
    with pytest.raises(UnicodeDecodeError):
        tok.decode([0xC3])


# ---------------------------------------------------------------------------------------------
# bad input


def test_encode_before_training_is_an_error():
    with pytest.raises(RuntimeError, match="not trained"):
        rustbpe.Tokenizer().encode("hello")


@pytest.mark.parametrize("vocab_size", [255, 0, -5])
def test_vocab_size_below_256_is_rejected(vocab_size):
    with pytest.raises(ValueError, match="at least 256"):
        rustbpe.Tokenizer().train_from_iterator(["hello"], vocab_size)


def test_invalid_regex_is_a_value_error():
    with pytest.raises(ValueError, match="invalid split pattern"):
        rustbpe.Tokenizer().train_from_iterator(["hello"], 300, pattern="(unclosed")
    with pytest.raises(ValueError, match="invalid split pattern"):
        rustbpe.split_text("x", "[z-a]")


@pytest.mark.parametrize("bad, name", [(b"bytes", "bytes"), (None, "NoneType"), (3, "int"), (["x"], "list")])
def test_non_str_items_are_a_type_error_naming_the_type(bad, name):
    with pytest.raises(TypeError, match=rf"item 1 is {name}"):
        rustbpe.Tokenizer().train_from_iterator(["fine", bad, "fine"], 300)


def test_an_exception_from_the_iterator_propagates():
    class Boom(Exception):
        pass

    def texts():
        yield "one document"
        raise Boom("disk on fire")

    tok = rustbpe.Tokenizer()
    with pytest.raises(Boom, match="disk on fire"):
        tok.train_from_iterator(texts(), 300, buffer_size=1)
    with pytest.raises(RuntimeError, match="not trained"):
        tok.encode("x")


def test_other_bad_arguments():
    tok = rustbpe.Tokenizer()
    with pytest.raises(TypeError, match="not iterable"):
        tok.train_from_iterator(42, 300)
    with pytest.raises(ValueError, match="buffer_size"):
        tok.train_from_iterator(["x"], 300, buffer_size=0)
    with pytest.raises(TypeError, match="progress must be callable"):
        tok.train_from_iterator(["x"], 300, progress="yes")
    with pytest.raises(ValueError, match="not valid Unicode"):
        tok.train_from_iterator(["ok", "lone surrogate \ud800"], 300)
    with pytest.raises(ValueError, match="engine"):
        rustbpe.split_text("x", engine="fast")


# ---------------------------------------------------------------------------------------------
# the benchmark CLI


def test_tok_bench_runs_and_compares_merges(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"doc{i}.txt").write_text(f"Document {i}. It's a short text, with words and 12345 numbers.\n" * 30)
    # --vs-python with this same interpreter: both sides are our rustbpe, so the merges must match
    proc = subprocess.run(
        [sys.executable, "-m", "nanochat.scripts.tok_bench", "--corpus", str(corpus), "--vocab", "300",
         "--repeats", "1", "--held-out", "0.2", "--vs-python", sys.executable, "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "merges identical to the published rustbpe" in proc.stdout and "yes" in proc.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["merges_identical"] is True
    ours = result["trainers"]["ours"]
    assert ours["encode_matches_tiktoken"] is True and ours["bytes_per_token"] > 1 and ours["median_seconds"] > 0


def test_tok_bench_rejects_a_missing_corpus(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nanochat.scripts.tok_bench", "--corpus", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "is not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr

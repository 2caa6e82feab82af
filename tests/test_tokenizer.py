"""The tokenizer: training with rustbpe, tiktoken encoding, special tokens, chat rendering, save/load, caching."""

import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydoc_data.topics import topics

from nanochat import tokenizer as tokenizer_module
from nanochat.tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN, RustBPETokenizer, get_tokenizer

TOPICS = [text for _, text in sorted(topics.items())]
TRAIN_TEXTS = TOPICS[: len(TOPICS) * 3 // 4]
HELD_OUT = "\n\n".join(TOPICS[len(TOPICS) * 3 // 4 :]) + (
    "\r\nUnicode: 東京は日本の首都です。 naïve café — e\u0301 (combining) 🎉👩‍👩‍👧 1234567 3.14159\r\n\t  end"
)
VOCAB = 512


@pytest.fixture(scope="module")
def tok():
    return RustBPETokenizer.train_from_iterator(iter(TRAIN_TEXTS), VOCAB)


def sp(tok, name):
    return tok.encode_special(name)


# --- vocabulary and special tokens ---------------------------------------------------------------------------


def test_vocab_layout_and_special_tokens_round_trip(tok):
    assert tok.get_vocab_size() == VOCAB
    assert tok.get_pattern() == SPLIT_PATTERN
    ids = [tok.encode_special(s) for s in SPECIAL_TOKENS]
    assert ids == list(range(VOCAB - len(SPECIAL_TOKENS), VOCAB))  # appended right after the merges, in order
    for s, i in zip(SPECIAL_TOKENS, ids):
        assert tok.decode([i]) == s
        assert tok.id_to_token(i) == s
    assert tok.get_bos_token_id() == ids[0]
    assert tok.get_special_tokens() == SPECIAL_TOKENS
    # special-token text in ordinary text is plain text, never a control token
    plain = tok.encode("<|bos|> hello <|assistant_end|>")
    assert not set(plain) & set(ids)
    assert tok.decode(plain) == "<|bos|> hello <|assistant_end|>"
    with pytest.raises(ValueError, match="not a special token"):
        tok.encode_special("<|nope|>")


def test_encode_prepend_append_and_batches(tok):
    bos, end = sp(tok, "<|bos|>"), sp(tok, "<|assistant_end|>")
    body = tok.encode("hello world")
    assert tok.encode("hello world", prepend="<|bos|>", append=end) == [bos] + body + [end]
    assert tok("hello world", prepend=bos) == [bos] + body
    texts = ["first document", "", HELD_OUT[:500]]
    batch = tok.encode(texts, prepend="<|bos|>", num_threads=2)
    assert batch == [[bos] + tok.encode(t) for t in texts]
    assert [tok.decode(ids[1:]) for ids in batch] == texts
    with pytest.raises(TypeError):
        tok.encode(42)
    with pytest.raises(TypeError):
        tok.encode(["ok", 3])


def test_decode_inverts_encode_on_held_out_unicode(tok):
    ids = tok.encode(HELD_OUT)
    assert tok.decode(ids) == HELD_OUT
    assert max(ids) < VOCAB - len(SPECIAL_TOKENS)


def test_tiktoken_encoding_equals_rustbpe_encode():
    import rustbpe

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(TRAIN_TEXTS), 700, pattern=SPLIT_PATTERN)
    ranks = {bytes(t): r for t, r in trainer.get_mergeable_ranks()}
    ours = RustBPETokenizer(ranks, trainer.get_pattern())
    assert ours.encode(HELD_OUT) == trainer.encode(HELD_OUT)
    for text in TOPICS[-5:]:
        assert ours.encode(text) == trainer.encode(text)
    # and training through RustBPETokenizer gives the same merges (training is deterministic)
    again = RustBPETokenizer.train_from_iterator(iter(TRAIN_TEXTS), 700 + len(SPECIAL_TOKENS))
    assert again.mergeable_ranks == ranks


def test_token_bytes_sum_to_decoded_byte_length(tok):
    token_bytes = tok.token_bytes()
    assert len(token_bytes) == VOCAB
    assert token_bytes[:256] == [1] * 256
    assert all(b == 0 for b in token_bytes[-len(SPECIAL_TOKENS):])
    rng = random.Random(0)
    n_regular = VOCAB - len(SPECIAL_TOKENS)
    for _ in range(50):
        ids = [rng.randrange(n_regular) for _ in range(rng.randrange(1, 40))]
        assert sum(token_bytes[i] for i in ids) == len(tok.enc.decode_bytes(ids))
    ids = tok.encode(HELD_OUT)
    assert sum(token_bytes[i] for i in ids) == len(HELD_OUT.encode("utf-8"))
    tensor = tok.get_token_bytes()
    assert tensor.dtype.is_floating_point is False and tensor.tolist() == token_bytes


def test_vocab_size_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size must be"):
        RustBPETokenizer.train_from_iterator(iter(["some text"]), 260)


# --- chat rendering ------------------------------------------------------------------------------------------


def test_render_conversation_masks(tok):
    conv = {"messages": [
        {"role": "user", "content": "What is BPE?"},
        {"role": "assistant", "content": "Byte pair encoding."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You are welcome."},
    ]}
    ids, mask = tok.render_conversation(conv)
    s = lambda n: sp(tok, n)  # noqa: E731
    expected = (
        [(s("<|bos|>"), 0), (s("<|user_start|>"), 0)] + [(i, 0) for i in tok.encode("What is BPE?")] + [(s("<|user_end|>"), 0)]
        + [(s("<|assistant_start|>"), 0)] + [(i, 1) for i in tok.encode("Byte pair encoding.")] + [(s("<|assistant_end|>"), 1)]
        + [(s("<|user_start|>"), 0)] + [(i, 0) for i in tok.encode("Thanks")] + [(s("<|user_end|>"), 0)]
        + [(s("<|assistant_start|>"), 0)] + [(i, 1) for i in tok.encode("You are welcome.")] + [(s("<|assistant_end|>"), 1)]
    )
    assert list(zip(ids, mask)) == expected
    # the message list on its own is accepted too
    assert tok.render_conversation(conv["messages"]) == (ids, mask)


def test_render_conversation_tool_parts(tok):
    conv = {"messages": [
        {"role": "user", "content": "What is 12*7?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me compute: "},
            {"type": "python", "text": "12*7"},
            {"type": "python_output", "text": "84"},
            {"type": "text", "text": " so 84."},
        ]},
    ]}
    ids, mask = tok.render_conversation(conv)
    s = lambda n: sp(tok, n)  # noqa: E731
    start = ids.index(s("<|assistant_start|>"))
    expected = (
        [(s("<|assistant_start|>"), 0)]
        + [(i, 1) for i in tok.encode("Let me compute: ")]
        + [(s("<|python_start|>"), 1)] + [(i, 1) for i in tok.encode("12*7")] + [(s("<|python_end|>"), 1)]
        + [(s("<|output_start|>"), 0)] + [(i, 0) for i in tok.encode("84")] + [(s("<|output_end|>"), 0)]
        + [(i, 1) for i in tok.encode(" so 84.")]
        + [(s("<|assistant_end|>"), 1)]
    )
    assert list(zip(ids[start:], mask[start:])) == expected
    assert set(mask[:start]) == {0}


def test_system_message_is_merged_into_first_user_message(tok):
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    merged = [{"role": "user", "content": "Be brief.\n\nHi"}, {"role": "assistant", "content": "Hello"}]
    assert tok.render_conversation(with_system) == tok.render_conversation(merged)


def test_render_conversation_truncates(tok):
    conv = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "reply " * 100}]
    full_ids, full_mask = tok.render_conversation(conv)
    ids, mask = tok.render_conversation(conv, max_tokens=50)
    assert len(full_ids) > 50 and (ids, mask) == (full_ids[:50], full_mask[:50])


@pytest.mark.parametrize(
    "messages, match",
    [
        ([], "at least one message"),
        ([{"role": "assistant", "content": "hi"}], "'user' was expected"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "message 1 has role 'user' but 'assistant'"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "system", "content": "c"}], "only the first"),
        ([{"role": "system", "content": "s"}], "followed by a user"),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "'user' was expected"),
        ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
        ([{"role": "user", "content": "   "}], "empty content"),
        ([{"role": "user"}], '"role" and "content"'),
        ([{"role": "user", "content": [{"type": "text", "text": "x"}]}], "only assistant messages have parts"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": []}], "non-empty list of parts"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "image", "text": "x"}]}], "part 0: type must be"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "python", "text": ""}]}], "non-empty string"),
    ],
)
def test_conversation_validation_errors(tok, messages, match):
    with pytest.raises(ValueError, match=match):
        tok.render_conversation({"messages": messages})


def test_render_for_completion(tok):
    conv = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    prompt = tok.render_for_completion(conv)
    user_only = tok.render_conversation({"messages": conv["messages"][:1]})[0]
    assert prompt == user_only + [sp(tok, "<|assistant_start|>")]
    assert tok.render_for_completion({"messages": conv["messages"][:1]}) == prompt  # ending with the user: same
    with pytest.raises(ValueError):
        tok.render_for_completion({"messages": [{"role": "robot", "content": "x"}]})


def test_visualize_tokenization_shows_every_token(tok):
    ids, mask = tok.render_conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    text = tok.visualize_tokenization(ids, mask)
    assert text.plain.count("|") >= len(ids) and "<|assistant_end|>" in text.plain


# --- save / load ---------------------------------------------------------------------------------------------


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path / "t")
    loaded = RustBPETokenizer.from_directory(tmp_path / "t")
    assert loaded.get_vocab_size() == tok.get_vocab_size()
    assert loaded.get_pattern() == SPLIT_PATTERN
    assert loaded.mergeable_ranks == tok.mergeable_ranks
    assert loaded.encode(HELD_OUT) == tok.encode(HELD_OUT)
    assert loaded.render_conversation([{"role": "user", "content": "x"}]) == tok.render_conversation([{"role": "user", "content": "x"}])
    # the format is plain text: JSON config + "base64 rank" lines
    config = json.loads((tmp_path / "t" / "tokenizer.json").read_text())
    assert config["pattern"] == SPLIT_PATTERN and config["special_tokens"]["<|bos|>"] == VOCAB - len(SPECIAL_TOKENS)
    lines = (tmp_path / "t" / "tokenizer.ranks").read_text().splitlines()
    assert len(lines) == VOCAB - len(SPECIAL_TOKENS) and lines[65] == "QQ== 65"  # b"A"


def test_stored_pattern_drives_encoding(tok, tmp_path):
    """The pattern saved with the tokenizer is the one used to encode: they cannot drift apart."""
    tok.save(tmp_path / "t")
    config_path = tmp_path / "t" / "tokenizer.json"
    config = json.loads(config_path.read_text())
    config["pattern"] = r"."  # one chunk per character: no merge can apply across characters
    config_path.write_text(json.dumps(config))
    per_char = RustBPETokenizer.from_directory(tmp_path / "t")
    assert per_char.encode("hello") == list(b"hello")
    assert tok.encode("hello") != list(b"hello")


def test_load_errors_name_the_file(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        RustBPETokenizer.from_directory(tmp_path / "missing")
    tok.save(tmp_path / "t")
    ranks = tmp_path / "t" / "tokenizer.ranks"
    good = ranks.read_text()
    ranks.write_text(good.replace("QQ== 65", "not-base64!! 65"))
    with pytest.raises(ValueError, match=r"tokenizer.ranks, line 66"):
        RustBPETokenizer.from_directory(tmp_path / "t")
    ranks.write_text(good.replace("QQ== 65", "QQ== 7"))
    with pytest.raises(ValueError, match="ranks must be 0, 1, 2"):
        RustBPETokenizer.from_directory(tmp_path / "t")
    ranks.write_text(good)
    config_path = tmp_path / "t" / "tokenizer.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "pattern": "(unclosed"}))
    with pytest.raises(ValueError, match="tokenizer.json: the split pattern cannot be used"):
        RustBPETokenizer.from_directory(tmp_path / "t")
    config_path.write_text(json.dumps({**config, "ranks_file": "../../etc/passwd"}))
    with pytest.raises(ValueError, match="must be a file name inside"):
        RustBPETokenizer.from_directory(tmp_path / "t")
    config_path.write_text(json.dumps(config))
    ranks.unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.ranks"):
        RustBPETokenizer.from_directory(tmp_path / "t")
    (tmp_path / "t" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json is not valid JSON"):
        RustBPETokenizer.from_directory(tmp_path / "t")
    (tmp_path / "t" / "tokenizer.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a nanochat tokenizer"):
        RustBPETokenizer.from_directory(tmp_path / "t")


# --- get_tokenizer -------------------------------------------------------------------------------------------


def test_get_tokenizer_trains_the_embedded_tokenizer_once_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    tokenizer_module._LOADED.clear()
    # two threads race to create it: both get a working tokenizer, one directory survives, no temp dirs remain
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: get_tokenizer(), range(2))
    cached = tmp_path / "tokenizer_embedded"
    assert sorted(p.name for p in tmp_path.iterdir() if "tokenizer" in p.name) == ["tokenizer_embedded"]
    assert first.get_vocab_size() == second.get_vocab_size() == tokenizer_module.EMBEDDED_VOCAB_SIZE
    assert first.mergeable_ranks == second.mergeable_ranks
    assert json.loads((cached / "tokenizer.json").read_text())["metadata"]["trained_on"].startswith("embedded corpus")
    mtime = (cached / "tokenizer.ranks").stat().st_mtime_ns
    tokenizer_module._LOADED.clear()
    again = get_tokenizer()  # loaded from disk, not retrained
    assert (cached / "tokenizer.ranks").stat().st_mtime_ns == mtime
    assert again.mergeable_ranks == first.mergeable_ranks
    assert get_tokenizer() is again  # memoised in the process


def test_get_tokenizer_prefers_a_trained_tokenizer(tok, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    tokenizer_module._LOADED.clear()
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.pkl").write_bytes(b"an upstream nanochat pickle: never loaded")
    tok.save(tmp_path / "tokenizer_embedded")  # stands in for the cached embedded tokenizer
    assert get_tokenizer().get_vocab_size() == VOCAB
    assert "never loaded" in capsys.readouterr().err
    tok2 = RustBPETokenizer.train_from_iterator(iter(TRAIN_TEXTS[:20]), 300)
    tok2.save(tmp_path / "tokenizer")
    assert get_tokenizer().get_vocab_size() == 300
    assert tokenizer_module.get_token_bytes().shape == (300,)


# --- the CLIs ------------------------------------------------------------------------------------------------


def run_module(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_tok_train_and_tok_eval_cli(tmp_path):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    for i, text in enumerate(TOPICS[:25]):
        (corpus / f"{i:02d}.txt").write_text(text)
    out = tmp_path / "tok"
    result = run_module("nanochat.scripts.tok_train", "--corpus", str(corpus), "--vocab-size", "400", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "23 files for training, 2 held out" in result.stdout
    assert "bytes/token" in result.stdout and f"saved to {out}" in result.stdout
    trained = RustBPETokenizer.from_directory(out)
    assert trained.get_vocab_size() == 400 and trained.metadata["documents"] == 23

    # an empty tiktoken cache forces a download: offline it is skipped with a plain message, online it is a row
    result = run_module("nanochat.scripts.tok_eval", "--tokenizer", str(out), "--text", str(corpus / "00.txt"),
                        env={"TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken_cache"), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "bytes per token" in result.stdout and str(out) in result.stdout
    assert ("skipped gpt2, cl100k_base" in result.stdout) or ("cl100k_base (tiktoken)" in result.stdout)


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("nanochat.scripts.tok_train", ["--corpus", "/no/such/dir"], "no such file or directory"),
        ("nanochat.scripts.tok_train", ["--corpus", "embedded", "--vocab-size", "100"], "--vocab-size must be at least"),
        ("nanochat.scripts.tok_eval", ["--tokenizer", "/no/such/tokenizer", "--text", __file__], "tokenizer.json does not exist"),
        ("nanochat.scripts.tok_eval", ["--text", "/no/such/text.txt"], "no such file or directory"),
    ],
)
def test_cli_bad_input_is_one_clear_line(module, args, message):
    result = run_module(module, *args, env={"COLUMNS": "200"})
    assert result.returncode == 2
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr

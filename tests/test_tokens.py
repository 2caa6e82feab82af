"""`nanochat-workbench tokens`: the split covers the text byte for byte, special tokens written in the text are kept
whole (or encoded as ordinary text with --ordinary), the display and --json say the same."""

import io
import json

import pytest

from nanochat.tokenizer import get_tokenizer
from workbench.cli import main
from workbench.course.tokens import MAX_TEXT_CHARS, split_tokens

TEXT = "Hello world, 12345! héllo 🙂"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_the_tokens_cover_the_text_byte_for_byte_with_their_real_ids():
    tokenizer = get_tokenizer()
    tokens = split_tokens(tokenizer, TEXT)
    assert b"".join(bytes(t["bytes"]) for t in tokens) == TEXT.encode()
    assert [t["id"] for t in tokens] == tokenizer.encode(TEXT)
    assert not any(t["special"] for t in tokens)
    for t in tokens:  # a token holding part of a character is marked, the others decode as they are
        try:
            whole = bytes(t["bytes"]).decode("utf-8")
        except UnicodeDecodeError:
            assert t["partial_utf8"]
        else:
            assert not t["partial_utf8"] and t["text"] == whole


def test_special_tokens_in_the_text_are_kept_whole_unless_ordinary():
    tokenizer = get_tokenizer()
    text = "<|user_start|>hi<|user_end|>"
    tokens = split_tokens(tokenizer, text, bos=True)
    ids = [t["id"] for t in tokens]
    assert ids[0] == tokenizer.get_bos_token_id()
    assert ids[1] == tokenizer.encode_special("<|user_start|>") and ids[-1] == tokenizer.encode_special("<|user_end|>")
    assert [t["special"] for t in tokens] == [True, True] + [False] * (len(tokens) - 3) + [True]
    ordinary = split_tokens(tokenizer, text, ordinary=True)
    assert not any(t["special"] for t in ordinary) and [t["id"] for t in ordinary] == tokenizer.encode(text)


def test_json_output(capsys):
    assert main(["tokens", TEXT, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == TEXT and data["characters"] == len(TEXT)
    assert data["tokens"] == len(data["token_list"]) and data["chars_per_token"] == round(len(TEXT) / data["tokens"], 3)
    assert data["vocab_size"] == get_tokenizer().get_vocab_size()


def test_display_shows_the_text_ids_and_bytes(capsys):
    assert main(["tokens", "Hello<|bos|>", "--bos"]) == 0
    out = capsys.readouterr().out
    tokenizer = get_tokenizer()
    bos = tokenizer.get_bos_token_id()
    assert out.count("(special)") == 2 and str(bos) in out
    for token_id in tokenizer.encode("Hello"):
        assert str(token_id) in out
    assert "48 65" in out  # the bytes of "He..." in hex
    assert "tokens for 12 characters" in out


def test_stdin_and_a_too_long_text(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    assert main(["tokens", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "from stdin"
    monkeypatch.setattr("sys.stdin", io.StringIO("x" * (MAX_TEXT_CHARS + 1)))
    assert main(["tokens", "-"]) == 2
    assert "longer than" in capsys.readouterr().err

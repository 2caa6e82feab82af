"""`nanochat-workbench bpe FILE`: lesson 02's plain-Python BPE exercise checked against rustbpe, merge by merge,
with a reason for the first difference. The learner's code runs in a real child process."""

import pytest

from workbench.cli import main

# A plain-Python trainer written the way the lesson describes it (our own test fixture).
GOOD = '''
from collections import Counter

import regex


def train_bpe(text, vocab_size, pattern):
    words = Counter(tuple(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text))
    token = {i: bytes([i]) for i in range(256)}
    merged = []
    for new_id in range(256, vocab_size):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break  # a small text can run out of pairs before vocab_size
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        token[new_id] = token[best[0]] + token[best[1]]
        merged.append(token[new_id])
        rewritten = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i:i + 2] == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            rewritten[tuple(out)] += count
        words = rewritten
    return merged
'''
TIE_THE_OTHER_WAY = GOOD.replace("min(pairs, key=lambda pair: (-pairs[pair], pair))",
                                 "max(pairs, key=lambda pair: (pairs[pair], pair))")
UNWEIGHTED = GOOD.replace("pairs[pair] += count", "pairs[pair] += 1")


def bpe(capsys, *args):
    rc = main(["bpe", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_correct_trainer_matches_every_merge(tmp_path, write, capsys):
    rc, out, _ = bpe(capsys, write("my_bpe.py", GOOD), "--vocab-size", 356)
    assert rc == 0, out
    assert "✔ all 100 merges match rustbpe's, in order" in out and "time: yours" in out


def test_returning_the_byte_tokens_too_is_accepted(write, capsys):
    text = GOOD.replace("    merged = []\n", "    merged = [bytes([i]) for i in range(256)]\n")
    rc, out, _ = bpe(capsys, write("my_bpe.py", text), "--vocab-size", 300)
    assert rc == 0 and "all 44 merges match" in out


def test_a_tie_broken_the_other_way_is_named_as_a_tie(write, capsys):
    rc, out, _ = bpe(capsys, write("my_bpe.py", TIE_THE_OTHER_WAY))
    assert rc == 1
    assert "merge " in out and "yours b'" in out and "rustbpe's b'" in out
    assert "a tie. The rule takes the smallest pair (left id, then right id)" in out


def test_counts_not_weighted_by_chunk_frequency_are_caught_with_both_counts(write, capsys):
    rc, out, _ = bpe(capsys, write("my_bpe.py", UNWEIGHTED))
    assert rc == 1 and "rustbpe's pair occurs" in out and "check how you count pairs" in out


def test_a_text_of_your_own(tmp_path, write, capsys):
    text = write("mixed.txt", "naïve café 😀 12345 x\r\n" * 50 + "the then there these those\n" * 40)
    rc, out, _ = bpe(capsys, write("my_bpe.py", GOOD), "--text", text, "--vocab-size", 290)
    assert rc == 0 and "all 28 merges match" in out and "ran out of pairs after 28 merges" in out


def test_a_trainer_that_never_returns_is_stopped(write, capsys):
    loop = "def train_bpe(text, vocab_size, pattern):\n    while True:\n        pass\n"
    rc, out, _ = bpe(capsys, write("my_bpe.py", loop), "--timeout", 2)
    assert rc == 1 and "did not finish within 2 s" in out


def test_errors_name_the_line_and_prints_are_shown(write, capsys):
    text = "print('counting pairs')\n\ndef train_bpe(text, vocab_size, pattern):\n    return {}['missing']\n"
    rc, out, _ = bpe(capsys, write("my_bpe.py", text))
    assert rc == 1 and "counting pairs" in out
    assert "train_bpe raised KeyError" in out and "my_bpe.py:4" in out


@pytest.mark.parametrize("text, message", [
    ("def train_bpe(:\n", "syntax error at my_bpe.py:1"),
    ("import no_such_package_here\n", "raised ModuleNotFoundError"),
    ("def train(text, vocab_size, pattern):\n    return []\n", "has no function train_bpe"),
    ("def train_bpe(text, vocab_size, pattern):\n    return 42\n", "it should return a list of bytes"),
    (GOOD.replace("    return merged", "    return merged[:10]"), "yours has 10 merges, rustbpe's 100"),
    ("import os\ndef train_bpe(text, vocab_size, pattern):\n    os._exit(3)\n", "exited with code 3"),
])
def test_broken_files_get_a_plain_message(write, capsys, text, message):
    rc, out, _ = bpe(capsys, write("my_bpe.py", text))
    assert rc == 1 and message in out, out
    assert "Traceback" not in out


def test_usage_errors_exit_2(tmp_path, write, capsys):
    good = write("my_bpe.py", GOOD)
    for args, message in ([tmp_path / "nope.py"], "does not exist"), ([good, "--vocab-size", 100], "at least 257"), \
            ([good, "--text", tmp_path / "nope.txt"], "--text"), ([good, "--timeout", 0], "positive"):
        rc, _, err = bpe(capsys, *args)
        assert rc == 2 and message in err, (args, err)

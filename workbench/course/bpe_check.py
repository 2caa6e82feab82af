"""`nanochat-workbench bpe FILE`: the check for lesson 02's exercise, a BPE trainer written in plain Python.

FILE defines `train_bpe(text, vocab_size, pattern)` returning the bytes of each merged token in merge order
(the 256 single-byte tokens may be included or left out). It runs in a child process with a timeout, on a
small text (the lessons, or `--text FILE`), and its merges are compared with rustbpe's on the same text,
vocab size and split pattern: the first merge that differs is shown with both tokens and a guess at why.

Exit codes: 0 every merge matches, 1 a difference or an error in FILE, 2 a usage error.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

DEFAULT_CHARS = 20_000
DEFAULT_VOCAB = 256 + 100
DEFAULT_TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a .py file that defines train_bpe(text, vocab_size, pattern)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB,
                        help=f"256 byte tokens + the merges to learn (default: {DEFAULT_VOCAB})")
    parser.add_argument("--chars", type=int, default=DEFAULT_CHARS,
                        help=f"how much of the text to train on, in characters (default: {DEFAULT_CHARS})")
    parser.add_argument("--text", metavar="TEXTFILE", help="train on this UTF-8 file (default: the lessons)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds your train_bpe may take (default: {DEFAULT_TIMEOUT:g})")


class UsageError(Exception):
    pass


def sample_text(chars: int, text_file: str | None = None) -> str:
    """The training text: the first `chars` characters of TEXTFILE, or of the lessons (accents, ², θ, emoji)."""
    if text_file:
        try:
            text = Path(text_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"--text {text_file} does not exist")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--text {text_file} cannot be read as UTF-8 text: {e}")
    else:
        from nanochat.embedded_corpus import strip_front_matter
        from workbench.course.lessons import lessons_dir
        text = "\n\n".join(strip_front_matter(p.read_text(encoding="utf-8")) for p in sorted(lessons_dir().glob("*.md")))
    if not text.strip():
        raise UsageError("the training text is empty")
    return text[:chars]


def reference_merges(text: str, vocab_size: int, pattern: str) -> list[bytes]:
    """rustbpe's merged tokens, in merge order (the 256 byte tokens left out)."""
    import rustbpe
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter([text]), vocab_size, pattern=pattern)
    return [token for token, _ in sorted(tok.get_mergeable_ranks(), key=lambda item: item[1])][256:]


def run_learner(path: Path, text: str, vocab_size: int, pattern: str, timeout: float) -> dict:
    """Run FILE's train_bpe in a child process. Returns {"merges": [...], "seconds", "stdout"} or {"error": ...}."""
    with tempfile.TemporaryDirectory(prefix="wb-bpe-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"path": str(path), "text": text, "vocab_size": vocab_size,
                                       "pattern": pattern, "result": str(result)}))
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "workbench.course.bpe_check", "--child", str(request)],
                                  capture_output=True, text=True, timeout=timeout, cwd=path.parent,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {"error": f"train_bpe did not finish within {timeout:g} s (--timeout to allow more). A loop "
                             f"that never ends, or a recount of every pair for every merge on a large text?"}
        printed = (proc.stdout + proc.stderr)[-2000:]
        if not result.exists():
            return {"error": f"the process running your file exited with code {proc.returncode} before "
                             f"train_bpe returned", "stdout": printed}
        outcome = json.loads(result.read_text())
        outcome.setdefault("seconds", time.perf_counter() - started)
        outcome["stdout"] = printed
        if "merges" in outcome:
            outcome["merges"] = [bytes.fromhex(h) for h in outcome["merges"]]
        return outcome


def _child(request_file: str) -> int:
    """In the child: import FILE, call train_bpe, write what came back (or the error) to the result file."""
    request = json.loads(Path(request_file).read_text())
    path, result_file = request["path"], Path(request["result"])

    def fail(message: str) -> int:
        result_file.write_text(json.dumps({"error": message}))
        return 1

    import importlib.util
    spec = importlib.util.spec_from_file_location("learner_bpe", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        return fail(f"syntax error at {os.path.basename(path)}:{e.lineno}: {e.msg}")
    except BaseException as e:  # anything at import time is the learner's to see
        return fail(f"importing {os.path.basename(path)} raised {type(e).__name__}: {e}{_where(e, path)}")
    train = getattr(module, "train_bpe", None)
    if not callable(train):
        return fail(f"{os.path.basename(path)} has no function train_bpe(text, vocab_size, pattern)")
    started = time.perf_counter()
    try:
        merges = train(request["text"], request["vocab_size"], request["pattern"])
    except BaseException as e:
        return fail(f"train_bpe raised {type(e).__name__}: {e}{_where(e, path)}")
    seconds = time.perf_counter() - started
    try:
        merges = [bytes(m) for m in merges]
    except (TypeError, ValueError):
        return fail(f"train_bpe returned {type(merges).__name__}; it should return a list of bytes, one per merged "
                    f"token in merge order (e.g. [b'th', b'the', ...])")
    result_file.write_text(json.dumps({"merges": [m.hex() for m in merges], "seconds": seconds}))
    return 0


def _where(error: BaseException, path: str) -> str:
    """" (at FILE:LINE: code)" for the deepest frame of the learner's file in the traceback."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == path]
    return f" (at {os.path.basename(path)}:{frames[-1].lineno}: {frames[-1].line})" if frames else ""


def _count_pairs(words: Counter) -> Counter:
    pairs = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += count
    return pairs


def _apply_merge(words: Counter, pair: tuple[int, int], new_id: int) -> Counter:
    merged = Counter()
    for word, count in words.items():
        out, i = [], 0
        while i < len(word):
            if word[i:i + 2] == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged[tuple(out)] += count
    return merged


def pair_counts_before(text: str, pattern: str, merge: int) -> tuple[Counter, dict[int, bytes]]:
    """Replay the rule (highest count; on a tie the smallest (left id, right id)) for `merge` merges and return
    the pair counts at that point, with the bytes of every id: what both trainers should have seen."""
    import regex
    words = Counter(tuple(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text))
    token = {i: bytes([i]) for i in range(256)}
    for new_id in range(256, 256 + merge):
        pairs = _count_pairs(words)
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        token[new_id] = token[best[0]] + token[best[1]]
        words = _apply_merge(words, best, new_id)
    return _count_pairs(words), token


def explain(text: str, pattern: str, index: int, mine: bytes, theirs: bytes) -> list[str]:
    """Why merge `index` differs, from the pair counts both trainers should have had at that point."""
    pairs, token = pair_counts_before(text, pattern, index)
    made = {}
    for pair, count in pairs.items():
        made.setdefault(token[pair[0]] + token[pair[1]], []).append((count, pair))
    ref_count, ref_pair = max(made.get(theirs, [(0, None)]))
    my_count, my_pair = max(made.get(mine, [(0, None)]))
    if my_pair is None:
        return [f"  no pair of tokens at this point joins into {mine!r}: check how a merge rewrites the chunks "
                f"(left to right, no overlaps) and that you split with the pattern"]
    if my_count == ref_count:
        return [f"  both occur {ref_count} times at this point: a tie. The rule takes the smallest pair (left id, "
                f"then right id): rustbpe's is {ref_pair}, yours {my_pair}"]
    return [f"  counted over the chunks (each weighted by how often it occurs, pairs only inside a chunk), "
            f"rustbpe's pair occurs {ref_count} times here and yours {my_count}: check how you count pairs and "
            f"pick the highest, and how a merge rewrites the chunks"]


def compare(mine: list[bytes], theirs: list[bytes], text: str, pattern: str) -> tuple[bool, list[str]]:
    """(all match, report lines) for the learner's merges against rustbpe's."""
    if len(mine) == len(theirs) + 256 and all(mine[i] == bytes([i]) for i in range(256)):
        mine = mine[256:]  # the byte tokens were included: fine
    same = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
    if same == len(mine) == len(theirs):
        return True, [f"✔ all {len(theirs)} merges match rustbpe's, in order"]
    lines = [f"✘ merges 1–{same} match" if same > 1 else "✘ merge 1 matches" if same else "✘ merge 1 differs"]
    if same < len(mine) and same < len(theirs):
        lines.append(f"  merge {same + 1}: yours {mine[same]!r}, rustbpe's {theirs[same]!r}")
        lines += explain(text, pattern, same, mine[same], theirs[same])
    else:
        lines.append(f"  yours has {len(mine)} merges, rustbpe's {len(theirs)} (vocab_size - 256 are expected)")
    return False, lines


def run(args) -> int:
    path = Path(args.file)
    try:
        if not path.is_file():
            raise UsageError(f"{args.file} does not exist" if not path.exists() else f"{args.file} is not a file")
        if args.vocab_size < 257:
            raise UsageError("--vocab-size must be at least 257 (the 256 byte tokens and one merge)")
        if args.chars < 1 or args.timeout <= 0:
            raise UsageError("--chars and --timeout must be positive")
        text = sample_text(args.chars, args.text)
    except UsageError as e:
        print(f"nanochat-workbench bpe: error: {e}", file=sys.stderr)
        return 2
    from nanochat.tokenizer import SPLIT_PATTERN
    merges = args.vocab_size - 256
    print(f"BPE check: {path.name} train_bpe against rustbpe · {len(text):,} characters · vocab {args.vocab_size} "
          f"({merges} merges) · nanochat's split pattern")
    started = time.perf_counter()
    theirs = reference_merges(text, args.vocab_size, SPLIT_PATTERN)
    rust_s = time.perf_counter() - started
    outcome = run_learner(path.resolve(), text, args.vocab_size, SPLIT_PATTERN, args.timeout)
    if outcome.get("stdout", "").strip():
        print("your prints (the tail):\n" + outcome["stdout"].rstrip())
    if "error" in outcome:
        print(f"✘ {outcome['error']}")
        return 1
    ok, lines = compare(outcome["merges"], theirs, text, SPLIT_PATTERN)
    print("\n".join(lines))
    if len(theirs) < merges:
        print(f"  (the text ran out of pairs after {len(theirs)} merges: a longer text gives all {merges})")
    print(f"time: yours {outcome['seconds']:.2f} s, rustbpe {rust_s:.3f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2]))
    parser = argparse.ArgumentParser(prog="python -m workbench.course.bpe_check", description=__doc__.split("\n")[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))

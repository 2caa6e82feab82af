"""Benchmark the BPE trainer: training time, peak memory, compression and encode speed, side by side.

    python -m nanochat.scripts.tok_bench                                  # embedded corpus, vocab 32768
    python -m nanochat.scripts.tok_bench --corpus DIR --vocab 32768 --vs hf \\
        --vs-python /tmp/pubvenv/bin/python --repeats 5

Every training runs in its own child process, so its peak RSS is its own; the trainers take turns
(A B C A B C ...) so that a busy machine slows them alike, and the table shows medians. Trainers:

- `ours`: this project's `rustbpe` (the Rust crate in rustbpe/).
- `--vs-python PATH`: the same measurement with another interpreter, e.g. a venv holding the PyPI `rustbpe`
  (same module name, so it cannot share our environment). Its merges are compared with ours.
- `--vs hf`: HuggingFace `tokenizers` BPE configured the same way (byte-level, same split regex, same vocab).

The corpus is DIR's `*.txt` files (one document per file, read lazily by the iterator the trainer consumes,
so reading is part of the time, as in real training), or the embedded offline corpus. `--held-out F` keeps
every (1/F)-th document out of training to measure bytes per token; `--held-out 0` trains on everything
(bytes/token is then measured on training text and labelled so).

This file is also the child process: run as a script (`python tok_bench.py --child ...`) it imports only the
standard library and the trainer, so any interpreter with `rustbpe` or `tokenizers` installed can run it.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

GPT4_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
NANOCHAT_PATTERN = GPT4_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}{1,2}")
PATTERNS = {"gpt4": GPT4_PATTERN, "nanochat": NANOCHAT_PATTERN}


# ---------------------------------------------------------------------------------------------
# the corpus (used by parent and child alike)


def corpus_paths(source: str) -> list[pathlib.Path]:
    """The documents of a source: the *.txt files under a directory, or one JSON-lines file."""
    p = pathlib.Path(source)
    if p.is_dir():
        return sorted(q for q in p.rglob("*.txt") if q.is_file())
    return [p]


def iter_documents(source: str):
    """Yield (index, text) for every document of `source`, reading lazily."""
    p = pathlib.Path(source)
    if p.is_dir():
        for i, q in enumerate(corpus_paths(source)):
            yield i, q.read_text(encoding="utf-8", errors="replace")
    else:
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f):
                yield i, json.loads(line)


def held_out_every(fraction: float) -> int:
    """Document i is held out when i % k == 0 (k = round(1 / fraction)); 0 means none."""
    return 0 if fraction <= 0 else max(2, round(1 / fraction))


def training_documents(source: str, every: int):
    for i, text in iter_documents(source):
        if not every or i % every:
            yield text


def evaluation_documents(source: str, every: int) -> list[str]:
    return [text for i, text in iter_documents(source) if (i % every == 0 if every else True)]


# ---------------------------------------------------------------------------------------------
# child: train once, report one JSON line


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux it is read from /proc (VmHWM): `ru_maxrss` would
    also count the parent's memory, which a child inherits as its high-water mark across fork+exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_rustbpe(corpus_file: str, every: int, vocab: int, pattern: str, result: dict):
    """Train our (or another interpreter's) rustbpe; returns (tokenizer, mergeable ranks)."""
    import rustbpe

    result["module"] = str(pathlib.Path(rustbpe.__file__).parent)
    try:
        from importlib.metadata import version

        result["version"] = version("rustbpe")
    except Exception:  # ours is part of the nanochat-workbench distribution
        result["version"] = "workbench"
    tok = rustbpe.Tokenizer()
    result["rss_before_mb"] = peak_rss_mb()
    t0, c0 = time.perf_counter(), cpu_seconds()
    tok.train_from_iterator(training_documents(corpus_file, every), vocab, pattern=pattern)
    result["seconds"], result["cpu_seconds"] = time.perf_counter() - t0, cpu_seconds() - c0
    result["vocab_size"] = tok.vocab_size
    return tok, tok.get_mergeable_ranks()


def train_hf(corpus_file: str, every: int, vocab: int, pattern: str, result: dict):
    """Train HuggingFace tokenizers' BPE the same way (byte-level, same split regex); returns (tokenizer, None)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    import tokenizers

    result["module"], result["version"] = "tokenizers", tokenizers.__version__
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=0, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    result["rss_before_mb"] = peak_rss_mb()
    t0, c0 = time.perf_counter(), cpu_seconds()
    tok.train_from_iterator(training_documents(corpus_file, every), trainer=trainer)
    result["seconds"], result["cpu_seconds"] = time.perf_counter() - t0, cpu_seconds() - c0
    result["vocab_size"] = tok.get_vocab_size()
    return tok, None


def evaluate_trained(tok, ranks, docs: list[str], pattern: str, result: dict) -> None:
    """Bytes per token and one-thread encode speed on `docs` (and, for rustbpe, agreement with tiktoken)."""
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    result["eval_bytes"] = nbytes
    if ranks is not None:
        import tiktoken

        enc = tiktoken.Encoding(name="bench", pat_str=pattern, mergeable_ranks=dict(ranks), special_tokens={})
        t0 = time.perf_counter()
        tik = [enc.encode_ordinary(d) for d in docs]
        result["tiktoken_mb_s"] = nbytes / 1e6 / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        own = [tok.encode(d) for d in docs]
        result["own_encode_mb_s"] = nbytes / 1e6 / (time.perf_counter() - t0)
        result["encode_matches_tiktoken"] = own == tik
        result["tokens"] = sum(len(x) for x in tik)
    else:
        t0 = time.perf_counter()
        own = [tok.encode(d).ids for d in docs]
        result["own_encode_mb_s"] = nbytes / 1e6 / (time.perf_counter() - t0)
        result["tokens"] = sum(len(x) for x in own)
    result["bytes_per_token"] = nbytes / max(1, result["tokens"])


def child_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="tok_bench --child")
    ap.add_argument("--child", required=True, choices=["rustbpe", "hf"])
    ap.add_argument("--corpus-file", required=True, help="a directory of .txt files or a JSON-lines file")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--pattern", required=True)
    ap.add_argument("--every", type=int, required=True)
    ap.add_argument("--evaluate", action="store_true", help="also measure compression and encode speed")
    ap.add_argument("--ranks-out", default=None)
    args = ap.parse_args(argv)
    pattern = PATTERNS[args.pattern]
    result: dict = {"trainer": args.child, "python": sys.executable}
    train = train_rustbpe if args.child == "rustbpe" else train_hf
    tok, ranks = train(args.corpus_file, args.every, args.vocab, pattern, result)
    result["peak_rss_mb"] = peak_rss_mb()
    if args.ranks_out and ranks is not None:
        with open(args.ranks_out, "w") as f:
            json.dump([[b.hex(), i] for b, i in ranks], f)
    if args.evaluate:
        evaluate_trained(tok, ranks, evaluation_documents(args.corpus_file, args.every), pattern, result)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# parent: run the children in turns, print the table


def run_child(python: str, trainer: str, args, corpus_file: str, every: int, evaluate: bool,
              ranks_out: str | None) -> dict:
    cmd = [python, str(pathlib.Path(__file__).resolve()), "--child", trainer, "--corpus-file", corpus_file,
           "--vocab", str(args.vocab), "--pattern", args.pattern, "--every", str(every)]
    if evaluate:
        cmd.append("--evaluate")
    if ranks_out:
        cmd += ["--ranks-out", ranks_out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"tok_bench: the {trainer} run with {python} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT "):])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Benchmark BPE training: ours vs the published rustbpe vs HF tokenizers.")
    ap.add_argument("--corpus", default=None, help="directory of .txt files (default: the embedded offline corpus)")
    ap.add_argument("--vocab", type=int, default=32768, help="vocabulary size (default 32768)")
    ap.add_argument("--repeats", type=int, default=5, help="trainings per trainer, taken in turns (default 5)")
    ap.add_argument("--vs", choices=["hf"], default=None, help="also train HuggingFace tokenizers BPE")
    ap.add_argument("--vs-python", default=None, metavar="PATH",
                    help="also train with this interpreter's rustbpe (e.g. a venv with the PyPI package)")
    ap.add_argument("--held-out", type=float, default=0.05, metavar="F",
                    help="fraction of documents kept out of training for bytes/token (default 0.05; 0 = none)")
    ap.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt4", help="split pattern (default gpt4)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write all measurements to this JSON file")
    args = ap.parse_args(argv)
    if args.vocab < 256:
        ap.error(f"--vocab must be at least 256, got {args.vocab}")
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    if not 0 <= args.held_out < 1:
        ap.error(f"--held-out must be in [0, 1), got {args.held_out}")
    if args.vs == "hf":
        import importlib.util

        if importlib.util.find_spec("tokenizers") is None:
            ap.error("--vs hf needs HuggingFace tokenizers: pip install tokenizers")
    if args.vs_python and not (os.path.isfile(args.vs_python) and os.access(args.vs_python, os.X_OK)):
        ap.error(f"--vs-python: {args.vs_python} is not an executable file")
    if args.corpus is not None and not os.path.isdir(args.corpus):
        ap.error(f"--corpus: {args.corpus} is not a directory")
    if args.corpus is not None and not corpus_paths(args.corpus):
        ap.error(f"--corpus: no .txt files under {args.corpus}")
    return args


def corpus_file(args, tmp: str) -> tuple[str, str]:
    """(what the children read, its name): --corpus, or the embedded corpus written as JSON lines into `tmp`."""
    if args.corpus is not None:
        return args.corpus, args.corpus
    from nanochat import embedded_corpus

    path = os.path.join(tmp, "embedded.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for doc in embedded_corpus.documents():
            f.write(json.dumps(doc) + "\n")
    return path, "embedded offline corpus"


def training_size(source: str, every: int) -> tuple[int, int, int]:
    """(documents, training documents, training bytes)."""
    n_docs = n_train_docs = train_bytes = 0
    for i, text in iter_documents(source):
        n_docs += 1
        if not every or i % every:
            n_train_docs += 1
            train_bytes += len(text.encode("utf-8"))
    return n_docs, n_train_docs, train_bytes


def run_in_turns(args, trainers, source: str, every: int, tmp: str, console) -> dict[str, list[dict]]:
    """Every trainer `--repeats` times, A B C A B C ...; the first round also evaluates and saves the ranks."""
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in trainers}
    for r in range(args.repeats):
        for name, python, kind in trainers:
            ranks_out = os.path.join(tmp, f"{name.replace(' ', '_')}.json") if r == 0 else None
            res = run_child(python, kind, args, source, every, evaluate=(r == 0), ranks_out=ranks_out)
            runs[name].append(res)
            console.print(f"  run {r + 1}/{args.repeats} {name:>14}: {res['seconds']:6.2f} s "
                          f"(cpu {res['cpu_seconds']:.2f} s), peak RSS {res['peak_rss_mb']:.0f} MB")
    return runs


def compare_merges(tmp: str) -> tuple[bool, int | None]:
    """(ours == published, the first differing id or None), from the ranks the first round saved."""
    with open(os.path.join(tmp, "ours.json")) as f:
        ours_ranks = json.load(f)
    with open(os.path.join(tmp, "published.json")) as f:
        pub_ranks = json.load(f)
    first_diff = next((i for i, (a, b) in enumerate(zip(ours_ranks, pub_ranks)) if a != b), None)
    return ours_ranks == pub_ranks, first_diff


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    summary = {}
    for name, rs in runs.items():
        secs = [x["seconds"] for x in rs]
        summary[name] = {
            "median_seconds": statistics.median(secs),
            "seconds": secs,
            "median_cpu_seconds": statistics.median(x["cpu_seconds"] for x in rs),
            "median_peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in rs),
            **{k: rs[0].get(k) for k in ("vocab_size", "bytes_per_token", "tiktoken_mb_s", "own_encode_mb_s",
                                          "encode_matches_tiktoken", "module", "version", "python")},
        }
    return summary


def results_table(summary: dict[str, dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ["trainer", "median s", "min–max s", "cpu s", "peak RSS MB", "vocab", "bytes/token",
                "tiktoken enc MB/s", "own enc MB/s", "enc = tiktoken"]:
        table.add_column(col, justify="left" if col == "trainer" else "right", no_wrap=col == "trainer")

    def fmt(v, f):
        return "–" if v is None else format(v, f)

    for name, s in summary.items():
        secs = s["seconds"]
        table.add_row(
            f"{name} ({s['version']})", f"{s['median_seconds']:.2f}", f"{min(secs):.2f}–{max(secs):.2f}",
            f"{s['median_cpu_seconds']:.2f}", f"{s['median_peak_rss_mb']:.0f}", str(s["vocab_size"]),
            fmt(s["bytes_per_token"], ".3f"), fmt(s["tiktoken_mb_s"], ".1f"), fmt(s["own_encode_mb_s"], ".1f"),
            "–" if s["encode_matches_tiktoken"] is None else ("yes" if s["encode_matches_tiktoken"] else "NO"),
        )
    return table


def print_comparisons(summary, every, comparison, vocab, load_end, console) -> None:
    held = "held-out" if every else "training (in-sample, --held-out 0)"
    console.print(f"bytes/token and encode speed on the {held} documents; encode speed is one thread.")
    ours = summary["ours"]["median_seconds"]
    for name in summary:
        if name != "ours":
            console.print(f"{name} / ours, median training time: [bold]{summary[name]['median_seconds'] / ours:.2f}×[/]")
    if comparison is not None:
        identical, first_diff = comparison
        verdict = "[green]yes[/]" if identical else f"[red]NO[/] (first difference at id {first_diff})"
        console.print(f"merges identical to the published rustbpe (all {vocab} ranks compared): {verdict}")
    if load_end > (os.cpu_count() or 1) * 0.75 or os.getloadavg()[0] > (os.cpu_count() or 1):
        console.print(f"[yellow]note[/]: the machine was busy (load average {load_end:.2f}); timings may be disturbed.")


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    trainers = [("ours", sys.executable, "rustbpe")]
    if args.vs_python:
        trainers.append(("published", args.vs_python, "rustbpe"))
    if args.vs == "hf":
        trainers.append(("hf tokenizers", sys.executable, "hf"))
    every = held_out_every(args.held_out)
    with tempfile.TemporaryDirectory(prefix="tok_bench_") as tmp:
        source, corpus_name = corpus_file(args, tmp)
        n_docs, n_train_docs, train_bytes = training_size(source, every)
        console.print(f"[bold]tok_bench[/]: {corpus_name}: {n_docs} documents; training on {n_train_docs} "
                      f"({train_bytes / 1e6:.1f} MB), vocab {args.vocab}, pattern {args.pattern}, "
                      f"{args.repeats} runs each in turns, {os.cpu_count()} cores, "
                      f"load average {os.getloadavg()[0]:.2f}")
        runs = run_in_turns(args, trainers, source, every, tmp, console)
        load_end = os.getloadavg()[0]
        comparison = compare_merges(tmp) if args.vs_python else None
    summary = summarize(runs)
    console.print(results_table(summary, f"BPE training, vocab {args.vocab}, {train_bytes / 1e6:.1f} MB ({corpus_name})"))
    print_comparisons(summary, every, comparison, args.vocab, load_end, console)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"corpus": corpus_name, "train_bytes": train_bytes, "vocab": args.vocab,
                       "pattern": args.pattern, "merges_identical": None if comparison is None else comparison[0],
                       "trainers": summary, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv[1:]:
        child_main(sys.argv[1:])
    else:
        sys.exit(main())

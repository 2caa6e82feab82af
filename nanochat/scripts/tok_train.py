"""Train the BPE tokenizer (our Rust trainer) on the shards, the embedded corpus, or your own text.

    python -m nanochat.scripts.tok_train                          # shards if downloaded, else the embedded corpus
    python -m nanochat.scripts.tok_train --corpus embedded --vocab-size 4096
    python -m nanochat.scripts.tok_train --corpus path/to/texts/ --vocab-size 8192 --output /tmp/my_tokenizer

The result goes to $NANOCHAT_BASE_DIR/tokenizer/ by default, where `get_tokenizer()` (and so training and chat)
picks it up instead of the embedded-corpus tokenizer. It prints the training time and the compression
(bytes per token) on held-out text: the shards' val split, the embedded corpus's val split, or for a text
folder every 20th file (the last file when there are fewer than 20; the last 5% of a single file).
"""

import argparse
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
SHARDS_VOCAB = 65536  # nanochat's vocabulary for the FineWeb-Edu shards
SHARDS_DOC_CAP = 10_000  # characters kept per document, as nanochat does: long documents add little
SHARDS_MAX_CHARS = 2_000_000_000
HELD_OUT_CHARS = 2_000_000


class UserError(Exception):
    """A problem with the command line or the input: printed as one line, no traceback."""


def suggested_vocab_size(corpus_bytes: int) -> int:
    """A vocabulary the corpus can fill with useful merges: ~3*sqrt(bytes), as a power of two in [512, 65536].

    (About 4096 for the 3 MB embedded corpus, 32768 for 100 MB of books.)
    """
    target = 3 * math.sqrt(max(corpus_bytes, 1))
    return int(min(65536, max(512, 2 ** round(math.log2(max(target, 1))))))


def text_files(path: Path, flag: str = "--corpus") -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and not p.name.startswith("."))
        files = [p for p in files if p.is_file()]
        if not files:
            raise UserError(f"{path} holds no text files ({', '.join(TEXT_SUFFIXES)})")
        return files
    hint = " (or use 'shards' / 'embedded')" if flag == "--corpus" else ""
    raise UserError(f"{flag} {path}: no such file or directory{hint}")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


def corpus_plan(corpus: str):
    """(description, train document iterator factory, held-out texts, corpus bytes or None, kind)."""
    from nanochat import dataset, embedded_corpus

    if corpus == "auto":
        corpus = "shards" if dataset.list_parquet_files() else "embedded"
    if corpus == "shards":
        files = dataset.list_parquet_files()
        if len(files) < 2:
            raise UserError(f"need at least 2 shards in {dataset.get_data_dir()} (the last one is val): "
                            "python -m nanochat.dataset -n 8")

        def train_docs():
            for docs in dataset.documents_batched("train", source="shards"):
                yield from docs

        held_out = []
        for docs in dataset.documents_batched("val", source="shards"):
            held_out.extend(docs)
            if sum(map(len, held_out)) > HELD_OUT_CHARS:
                break
        return f"FineWeb-Edu shards ({len(files) - 1} train shards)", train_docs, held_out, None, "shards"
    if corpus == "embedded":
        train = embedded_corpus.split("train")
        size = sum(len(d.encode("utf-8")) for d in train)
        return "the embedded corpus (train split)", lambda: iter(train), embedded_corpus.split("val"), size, "embedded"

    files = text_files(Path(corpus))
    size = sum(f.stat().st_size for f in files)
    if len(files) == 1:
        text = read_text(files[0])
        cut = text.rfind("\n", 0, int(len(text) * 0.95))
        cut = cut if cut > 0 else int(len(text) * 0.95)
        return f"{files[0]} (first 95%)", lambda: iter([text[:cut]]), [text[cut:]], size, "path"
    held = set(range(0, len(files), 20)) if len(files) >= 20 else {len(files) - 1}
    train_files = [f for i, f in enumerate(files) if i not in held]
    held_out = [read_text(files[i]) for i in sorted(held)]
    description = f"{corpus} ({len(train_files)} files for training, {len(held)} held out)"
    return description, lambda: (read_text(f) for f in train_files), held_out, size, "path"


def capped(docs, doc_cap: int | None, max_chars: int | None, stats: dict, on_doc=None):
    """Documents cut to `doc_cap` characters each, stopping after `max_chars` in total."""
    for doc in docs:
        if doc_cap:
            doc = doc[:doc_cap]
        if max_chars is not None and stats["chars"] + len(doc) > max_chars:
            doc = doc[: max_chars - stats["chars"]]
        if doc:
            stats["chars"] += len(doc)
            stats["docs"] += 1
            if on_doc:
                on_doc(len(doc))
            yield doc
        if max_chars is not None and stats["chars"] >= max_chars:
            return


def save_replacing(tokenizer, out: Path) -> bool:
    """Save into a temp dir next to `out`, then swap it in. Returns True if an older tokenizer was replaced."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    replaced = out.exists()
    try:
        tokenizer.save(tmp)
        if replaced:
            os.rename(out, old)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return replaced


def bytes_per_token(tokenizer, texts) -> tuple[float, int, int]:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in tokenizer.encode(list(texts)))
    return (n_bytes / n_tokens if n_tokens else float("nan")), n_bytes, n_tokens


def parse_args(argv=None):
    from nanochat.common import positive_int
    from nanochat.tokenizer import EMBEDDED_VOCAB_SIZE, SPECIAL_TOKENS

    parser = argparse.ArgumentParser(prog="python -m nanochat.scripts.tok_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="auto",
                        help="'auto' (default: shards if downloaded, else embedded), 'shards', 'embedded', "
                             "or a text file / a folder of .txt/.md/.rst files")
    parser.add_argument("--vocab-size", type=positive_int, default=None,
                        help=f"tokens incl. the {len(SPECIAL_TOKENS)} special ones (default: {SHARDS_VOCAB} for "
                             f"shards, {EMBEDDED_VOCAB_SIZE} for embedded, sized to the corpus for a path)")
    parser.add_argument("--max-chars", type=positive_int, default=None,
                        help=f"stop reading after this many characters (default: {SHARDS_MAX_CHARS:,} for shards, "
                             "everything otherwise)")
    parser.add_argument("--doc-cap", type=positive_int, default=None,
                        help=f"keep at most this many characters per document (default: {SHARDS_DOC_CAP:,} for "
                             "shards, no cap otherwise)")
    parser.add_argument("--output", default=None, help="output directory (default $NANOCHAT_BASE_DIR/tokenizer)")
    args = parser.parse_args(argv)
    n = len(SPECIAL_TOKENS)
    if args.vocab_size is not None and args.vocab_size < 256 + n:
        parser.error(f"--vocab-size must be at least {256 + n} (256 bytes + {n} special tokens)")
    if args.output and Path(args.output).exists() and not Path(args.output).is_dir():
        parser.error(f"--output {args.output} is a file, not a directory")
    return args


@dataclasses.dataclass
class Plan:
    """What to train on and how much of it."""
    description: str
    train_docs: object  # () -> iterator of documents
    held_out: list
    kind: str  # "shards" | "embedded" | "path"
    corpus_bytes: int | None
    vocab_size: int
    doc_cap: int | None
    max_chars: int | None
    out: Path


def make_plan(args, console) -> Plan:
    """The corpus (raises UserError), its defaults for vocab/doc cap/max chars, and the output directory."""
    from nanochat.tokenizer import EMBEDDED_VOCAB_SIZE

    description, train_docs, held_out, corpus_bytes, kind = corpus_plan(args.corpus)
    default_vocab = {"shards": SHARDS_VOCAB, "embedded": EMBEDDED_VOCAB_SIZE}.get(kind)
    vocab_size = args.vocab_size or default_vocab or suggested_vocab_size(corpus_bytes)
    doc_cap = args.doc_cap if args.doc_cap is not None else (SHARDS_DOC_CAP if kind == "shards" else None)
    max_chars = args.max_chars if args.max_chars is not None else (SHARDS_MAX_CHARS if kind == "shards" else None)
    if args.max_chars and corpus_bytes:
        corpus_bytes = min(corpus_bytes, args.max_chars)
    if corpus_bytes is not None and vocab_size > 4 * suggested_vocab_size(corpus_bytes):
        console.print(
            f"[yellow]warning:[/yellow] vocab {vocab_size:,} is large for {corpus_bytes / 1e6:.1f} MB of text "
            f"(about {suggested_vocab_size(corpus_bytes):,} would suit it): late merges will be rare words seen a "
            "handful of times, and training may stop early when no pair is left"
        )
    if args.output:
        out = Path(args.output)
    else:
        from nanochat.common import get_base_dir

        out = Path(get_base_dir()) / "tokenizer"
    return Plan(description, train_docs, held_out, kind, corpus_bytes, vocab_size, doc_cap, max_chars, out)


def train_with_progress(plan: Plan, console):
    """Train, showing characters read and then merges done. Returns (tokenizer, {"chars", "docs"}, seconds)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nanochat.tokenizer import SPECIAL_TOKENS, RustBPETokenizer

    num_merges = plan.vocab_size - 256 - len(SPECIAL_TOKENS)
    stats = {"chars": 0, "docs": 0}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    t0 = time.time()
    with Progress(*columns, console=console, transient=False) as progress:
        reading = progress.add_task("reading chars", total=plan.max_chars if plan.kind == "shards" else plan.corpus_bytes)
        merging = progress.add_task("merges", total=num_merges, start=False)
        merging_started = []

        def on_progress(done, total):  # rustbpe: merges done so far, of total (lowered if pairs run out)
            if not merging_started:  # the first call: all text has been read and counted
                merging_started.append(True)
                progress.update(reading, total=stats["chars"], completed=stats["chars"])
                progress.start_task(merging)
            progress.update(merging, completed=done, total=total)

        docs = capped(plan.train_docs(), plan.doc_cap, plan.max_chars, stats, lambda n: progress.advance(reading, n))
        tokenizer = RustBPETokenizer.train_from_iterator(docs, plan.vocab_size, progress=on_progress)
    return tokenizer, stats, time.time() - t0


def save_and_report(tokenizer, plan: Plan, stats, seconds, console) -> int:
    tokenizer.metadata = {
        "trained_on": plan.description,
        "documents": stats["docs"],
        "characters": stats["chars"],
        "doc_cap": plan.doc_cap,
        "train_seconds": round(seconds, 3),
    }
    if tokenizer.get_vocab_size() < plan.vocab_size:
        console.print(f"[yellow]note:[/yellow] the corpus ran out of pairs to merge: the vocabulary has "
                      f"{tokenizer.get_vocab_size():,} tokens, not {plan.vocab_size:,}")
    try:
        replaced = save_replacing(tokenizer, plan.out)
    except OSError as e:
        console.print(f"[red]error:[/red] could not save the tokenizer to {plan.out}: {e.strerror or e}")
        return 2
    bpt, n_bytes, n_tokens = bytes_per_token(tokenizer, plan.held_out)
    print(f"trained on {stats['chars']:,} characters in {stats['docs']:,} documents in {seconds:.2f} s")
    print(f"compression on held-out text: {bpt:.3f} bytes/token ({n_bytes:,} bytes -> {n_tokens:,} tokens)")
    note = " (replacing the previous tokenizer: models trained with that one no longer match)" if replaced else ""
    print(f"saved to {plan.out}{note}")
    return 0


def main(argv=None) -> int:
    from rich.console import Console

    from nanochat.dataset import DataError

    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        plan = make_plan(args, console)
        limits = f", docs capped at {plan.doc_cap:,} chars" if plan.doc_cap else ""
        limits += f", at most {plan.max_chars:,} chars" if plan.max_chars else ""
        print(f"training a {plan.vocab_size:,}-token tokenizer on {plan.description}{limits}")
        tokenizer, stats, seconds = train_with_progress(plan, console)
    except (UserError, DataError) as e:  # also from inside the document iterator (an unreadable file or shard)
        console.print(f"[red]error:[/red] {e}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: nothing was saved")
        return 130
    if stats["chars"] == 0:
        console.print("[red]error:[/red] the corpus is empty: nothing to train on")
        return 2
    return save_and_report(tokenizer, plan, stats, seconds, console)


if __name__ == "__main__":
    sys.exit(main())

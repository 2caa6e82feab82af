"""Measure a tokenizer's compression (bytes per token) on held-out text, next to GPT-2's and GPT-4's.

    python -m nanochat.scripts.tok_eval                           # our tokenizer on the val split in use
    python -m nanochat.scripts.tok_eval --text notes/ --tokenizer /tmp/my_tokenizer

More bytes per token means shorter sequences for the same text: more text fits in the context window and
each training step covers more of the corpus. The comparison rows use tiktoken's `gpt2` (50257 tokens) and
`cl100k_base` (GPT-4, 100277 tokens). tiktoken downloads their files from the internet on first use and caches
them (in $TIKTOKEN_CACHE_DIR, else a temp folder); offline and uncached, they are skipped and the table says so.
"""

import argparse
import sys
from pathlib import Path

from nanochat.scripts.tok_train import UserError, read_text, text_files

DEFAULT_MAX_CHARS = 5_000_000
REFERENCES = ("gpt2", "cl100k_base")


def held_out_texts(text: str | None, max_chars: int) -> tuple[str, list[str]]:
    """(description, texts): the given file/folder, or the val split of the data in use."""
    if text:
        texts = [read_text(f) for f in text_files(Path(text), flag="--text")]
        description = text
    else:
        from nanochat import dataset

        source = dataset.resolve_source("auto")
        texts = []
        for docs in dataset.documents_batched("val", source=source):
            texts.extend(docs)
            if sum(map(len, texts)) >= max_chars:
                break
        description = "the FineWeb-Edu val shard" if source == "shards" else "the embedded corpus's val split"
    kept, total = [], 0
    for t in texts:
        if total >= max_chars:
            break
        kept.append(t[: max_chars - total])
        total += len(kept[-1])
    if not total:
        raise UserError(f"{description} holds no text")
    return description, kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanochat.scripts.tok_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", default=None,
                        help="a tokenizer directory (default: the one get_tokenizer() uses)")
    parser.add_argument("--text", default=None,
                        help="held-out text: a file or a folder of .txt/.md/.rst files (default: the val split)")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
                        help=f"characters of text to use (default {DEFAULT_MAX_CHARS:,})")
    args = parser.parse_args(argv)

    import tiktoken
    from rich.console import Console
    from rich.table import Table

    from nanochat.tokenizer import RustBPETokenizer, get_tokenizer

    console = Console()
    try:
        if args.max_chars < 1:
            raise UserError("--max-chars must be positive")
        description, texts = held_out_texts(args.text, args.max_chars)
        if args.tokenizer:
            ours, ours_name = RustBPETokenizer.from_directory(args.tokenizer), args.tokenizer
        else:
            ours, ours_name = get_tokenizer(), "ours (get_tokenizer())"
    except (UserError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2

    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    rows, skipped = [], []
    encoders = [(ours_name, ours.get_vocab_size(), lambda batch: ours.encode(batch))]
    for name in REFERENCES:
        try:
            enc = tiktoken.get_encoding(name)
        except Exception as e:  # offline: requests' ConnectionError; also a damaged cache or a blocked proxy
            skipped.append(f"{name}: {type(e).__name__}")
            continue
        encoders.append((f"{name} (tiktoken)", enc.n_vocab, lambda batch, enc=enc: enc.encode_ordinary_batch(batch)))
    for name, vocab, encode in encoders:
        n_tokens = sum(len(ids) for ids in encode(texts))
        rows.append((name, vocab, n_tokens, n_bytes / n_tokens))

    table = Table(title=f"bytes per token on {description} ({n_bytes / 1e6:.2f} MB)")
    for column in ("tokenizer", "vocab", "tokens", "bytes/token", "vs ours"):
        table.add_column(column, justify="left" if column == "tokenizer" else "right")
    for name, vocab, n_tokens, bpt in rows:
        relative = "-" if name == rows[0][0] else f"{(n_tokens / rows[0][2] - 1) * 100:+.1f}% tokens"
        table.add_row(name, f"{vocab:,}", f"{n_tokens:,}", f"{bpt:.3f}", relative)
    console.print(table)
    if skipped:
        console.print(
            f"skipped {', '.join(r.split(':')[0] for r in skipped)}: tiktoken could not load their files "
            f"({'; '.join(skipped)}), which it downloads from the internet and caches: offline here, or not cached yet."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

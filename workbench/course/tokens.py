"""`nanochat-workbench tokens "some text"`: how the project's tokenizer splits a text.

    nanochat-workbench tokens "Hello world, 12345!"          the text with coloured token boundaries, then a table
                                                            of the tokens: id, text, bytes
    nanochat-workbench tokens "<|user_start|>hi<|user_end|>" special tokens written in the text are shown as such
    nanochat-workbench tokens - --json < file.txt            read stdin; one JSON object instead of the display

The tokenizer is `nanochat.tokenizer.get_tokenizer()` (the trained one under $NANOCHAT_BASE_DIR, else the
embedded-corpus one). A token can be part of a UTF-8 character; its bytes column shows exactly what it holds.
"""

import argparse
import codecs
import json
import re
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

MAX_TEXT_CHARS = 100_000
COLOURS = ("on dark_blue", "on dark_green", "on dark_red", "on purple4", "on dark_cyan", "on orange4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", metavar="TEXT", help="the text to split ('-' reads it from stdin)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the display")
    parser.add_argument("--bos", action="store_true", help="prepend <|bos|>, as every training document starts")
    parser.add_argument("--ordinary", action="store_true",
                        help="encode special-token text such as <|bos|> as ordinary text (what encode() does)")


def split_tokens(tokenizer, text: str, bos: bool = False, ordinary: bool = False) -> list[dict]:
    """[{"id", "text", "bytes", "special", "partial_utf8"}] for `text`; special tokens written in it are kept whole unless
    `ordinary`."""
    specials = tokenizer.special_ids
    if ordinary:
        pieces = [text]
    else:
        pattern = "(" + "|".join(re.escape(s) for s in specials) + ")"
        pieces = [p for p in re.split(pattern, text) if p]
    ids = [tokenizer.get_bos_token_id()] if bos else []
    for piece in pieces:
        ids += [specials[piece]] if (not ordinary and piece in specials) else tokenizer.encode(piece)
    special_ids = set(specials.values())
    tokens = []
    for token_id in ids:
        raw = tokenizer.enc.decode_single_token_bytes(token_id)
        try:
            piece, partial = raw.decode("utf-8"), False
        except UnicodeDecodeError:  # a byte-level token can hold part of a character
            piece, partial = raw.decode("utf-8", errors="replace"), True
        tokens.append({"id": token_id, "text": piece, "bytes": list(raw), "special": token_id in special_ids,
                       "partial_utf8": partial})
    return tokens


def _read_text(args) -> str | None:
    text = sys.stdin.read(MAX_TEXT_CHARS + 1) if args.text == "-" else args.text
    return None if len(text) > MAX_TEXT_CHARS else text


def run(args) -> int:
    text = _read_text(args)
    if text is None:
        print(f"nanochat-workbench tokens: error: the text is longer than {MAX_TEXT_CHARS} characters",
              file=sys.stderr)
        return 2
    from nanochat.tokenizer import get_tokenizer
    tokenizer = get_tokenizer()
    tokens = split_tokens(tokenizer, text, bos=args.bos, ordinary=args.ordinary)
    regular = [t for t in tokens if not t["special"]]
    summary = {"characters": len(text), "tokens": len(tokens), "vocab_size": tokenizer.get_vocab_size(),
               "chars_per_token": round(len(text) / len(regular), 3) if regular else None}
    if args.json:
        print(json.dumps({"text": text, **summary, "token_list": tokens}, ensure_ascii=False))
        return 0
    show(Console(highlight=False), tokens, summary)
    return 0


def _visible(text: str) -> str:
    return text.replace("\n", "↵\n").replace("\t", "→").replace(" ", "·") if text.strip() == "" else text.replace("\n", "↵\n")


def show(console: Console, tokens: list[dict], summary: dict) -> None:
    """The text with each token on its own background colour, then one row per token. A character split over
    several tokens is drawn in the colour of the token that completes it."""
    line = Text()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for i, t in enumerate(tokens):
        style = "bold magenta reverse" if t["special"] else COLOURS[i % len(COLOURS)]
        line.append(_visible(decoder.decode(bytes(t["bytes"]))), style=style)
    console.print(line)
    table = Table(show_edge=False, pad_edge=False)
    for column, justify in (("#", "right"), ("id", "right"), ("token", "left"), ("bytes", "left")):
        table.add_column(column, justify=justify)
    for i, t in enumerate(tokens):
        if t["special"]:
            shown = f"[bold magenta]{escape(t['text'])}[/bold magenta] (special)"
        elif t["partial_utf8"]:
            shown = "[dim]part of a UTF-8 character[/dim]"
        else:
            shown = escape(repr(t["text"]))
        table.add_row(str(i), str(t["id"]), shown, " ".join(f"{b:02x}" for b in t["bytes"]))
    console.print(table)
    ratio = summary["chars_per_token"]
    console.print(f"{summary['tokens']} tokens for {summary['characters']} characters"
                  + (f" ({ratio:g} characters per token, special tokens left out)" if ratio else "")
                  + f"; vocabulary {summary['vocab_size']}")

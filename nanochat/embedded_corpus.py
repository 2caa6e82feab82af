"""The embedded offline corpus: real English prose that every Python installation already carries.

A learner's first run must work with no network, so when no FineWeb-Edu shards have been downloaded the
tokenizer and the data loader read this corpus instead. It is built, deterministically, from text that ships
with CPython itself, plus any folder of Markdown the caller passes in (`extra_dir`; nanochat never looks for
one by itself, the workbench passes its lessons):

- `pydoc_data.topics`: the language reference and library topics that `help()` prints (one document per topic).
- docstrings of the standard library's modules, classes and functions, read from the `.py` source files with
  `ast` (nothing is imported or executed); one document per module, each docstring under a `name(signature)`
  heading the way pydoc shows it.
- the longer comment blocks of the same source files (eight words or more), one document per module.
- `extra_dir/*.md`, YAML front matter removed, one document per file, when a caller gives `extra_dir`.

The standard library's `test/`, `idlelib/`, `lib2to3/`, `turtledemo/` and `site-packages/` are skipped.

Licenses: CPython's documentation, docstrings and comments are under the PSF License Agreement (Python Software
Foundation License, a permissive, GPL-compatible license that allows copying and redistribution); an extra
folder is the caller's (the project's lessons are MIT, like the project).

Size (CPython 3.11.7 on Linux): 3.29 MB of text in 996 documents: pydoc topics 0.47 MB / 78, docstrings
1.96 MB / 504, comments 0.86 MB / 414 (the project's 18 lessons as an extra folder add 0.17 MB).
`python -m nanochat.embedded_corpus [EXTRA_DIR]` prints the figures for your installation. With the 4096-token
embedded tokenizer (3.5 bytes per token) the train split is about 0.87 M tokens: some 210 optimizer steps of 8 x 512
tokens before the first repeat. That is plenty for the depth-4 step and a tiny end-to-end CPU run, and far too
little for a good model (that is what the shards are for).

Identical texts (a few modules share comment blocks) are kept once. The split is fixed: documents are put in a
stable order (sorted by source and name, then shuffled with a fixed seed so that every source appears in both
halves) and every 20th document goes to "val", the rest to "train".
The corpus depends on the Python version installed, so it is deterministic per installation, not across them.
Building it parses ~600 source files (a few seconds), so the result is cached as JSON under
`$NANOCHAT_BASE_DIR/embedded_corpus/`, keyed by a fingerprint of every input file (path, size, mtime).
"""

import ast
import hashlib
import json
import os
import random
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nanochat.fsutil import atomic_write

CORPUS_VERSION = 1  # bump when the way documents are built changes: invalidates the on-disk cache
VAL_EVERY = 20  # every 20th document (after the fixed shuffle) is validation
SHUFFLE_SEED = 1337
MIN_COMMENT_WORDS = 8
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Document:
    source: str  # "pydoc_topics" | "stdlib_docstrings" | "stdlib_comments" | "extra"
    name: str  # topic, module or file name: used for the stable order and for `describe()`
    text: str


# ---------------------------------------------------------------------------------------------------------------
# the sources


@lru_cache(maxsize=1)
def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    """The standard library's .py files (minus SKIP_DIRS), in sorted order."""
    root = _stdlib_dir()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-"))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(_stdlib_dir()).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "__init__"


def _extra_files(extra_dir) -> list[Path]:
    return sorted(Path(extra_dir).glob("*.md")) if extra_dir is not None and Path(extra_dir).is_dir() else []


def _pydoc_topics() -> list[Document]:
    try:
        from pydoc_data.topics import topics  # a dict of plain strings; importing it runs no other code
    except ImportError:  # some distributions split pydoc_data into a separate package
        return []
    return [Document("pydoc_topics", name, text.strip()) for name, text in sorted(topics.items()) if text.strip()]


def _signature(node: ast.AST) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"{node.name}({ast.unparse(node.args)})"
    bases = ", ".join(ast.unparse(b) for b in node.bases)
    return f"class {node.name}({bases})" if bases else f"class {node.name}"


def _docstrings(module: str, tree: ast.Module) -> str:
    """One document for a module: its docstring, then each class/function docstring under a pydoc-like heading."""
    parts = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(f"{module}\n\n{doc}")

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(f"{prefix}{_signature(node)}\n\n{doc}")
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, f"{module}.")
    return "\n\n".join(parts)


def _comments(source: str) -> str:
    """The module's comment blocks (consecutive full-line comments) of MIN_COMMENT_WORDS words or more."""
    blocks, current = [], []
    for line in source.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("#") and not stripped.startswith("#!"):
            current.append(stripped.lstrip("#").strip())
            continue
        if current:
            text = " ".join(w for w in current if w)
            if len(text.split()) >= MIN_COMMENT_WORDS and "coding:" not in text:
                blocks.append(text)
            current = []
    return "\n\n".join(blocks)


def _stdlib_documents(files: list[Path]) -> list[Document]:
    docs = []
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # old escape sequences in some modules raise SyntaxWarning
                tree = ast.parse(source, filename=str(path))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue  # an unreadable or unparsable file contributes nothing
        module = _module_name(path)
        doc = _docstrings(module, tree)
        if doc:
            docs.append(Document("stdlib_docstrings", module, doc))
        comments = _comments(source)
        if comments:
            docs.append(Document("stdlib_comments", module, comments))
    return docs


def strip_front_matter(text: str) -> str:
    """Drop a leading YAML front matter block (between two `---` lines)."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            newline = text.find("\n", end + 4)
            return text[newline + 1 :] if newline != -1 else ""
    return text


def _extra_documents(files: list[Path]) -> list[Document]:
    docs = []
    for path in files:
        try:
            text = strip_front_matter(path.read_text(encoding="utf-8")).strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            docs.append(Document("extra", path.stem, text))
    return docs


def build(extra_dir=None) -> list[Document]:
    """Read every source (slow: parses the stdlib) and return the documents in the fixed order."""
    docs = _pydoc_topics() + _stdlib_documents(_stdlib_files()) + _extra_documents(_extra_files(extra_dir))
    docs.sort(key=lambda d: (d.source, d.name))
    seen = set()  # a few modules share identical comment blocks or docstrings: keep each text once
    docs = [d for d in docs if not (d.text in seen or seen.add(d.text))]
    random.Random(SHUFFLE_SEED).shuffle(docs)
    return docs


# ---------------------------------------------------------------------------------------------------------------
# the cache and the public API


def _fingerprint(extra_dir) -> str:
    h = hashlib.sha256(f"v{CORPUS_VERSION}|{sys.version}|{_stdlib_dir()}".encode())
    try:
        import pydoc_data.topics as topics_module

        inputs = [Path(topics_module.__file__)]
    except ImportError:
        inputs = []
    for path in inputs + _stdlib_files() + _extra_files(extra_dir):
        st = path.stat()
        h.update(f"|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _cache_dir() -> Path:
    from nanochat.common import get_base_dir

    return Path(get_base_dir()) / "embedded_corpus"


def _load_or_build(extra_dir) -> list[Document]:
    inputs = "corpus-" + hashlib.sha256(str(extra_dir).encode()).hexdigest()[:8]  # one cache per extra_dir
    path = _cache_dir() / f"{inputs}-{_fingerprint(extra_dir)}.json"
    try:
        with open(path, encoding="utf-8") as f:
            return [Document(**d) for d in json.load(f)["documents"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or damaged cache: rebuild it
    docs = build(extra_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{inputs}-*.json"):  # caches of older versions of the same inputs
            if stale != path:
                stale.unlink(missing_ok=True)
        # atomic: a reader sees the old file or the complete new one
        atomic_write(path, json.dumps({"version": CORPUS_VERSION, "documents": [d.__dict__ for d in docs]}))
    except OSError:
        pass  # a read-only base dir only costs the rebuild next time
    return docs


_DOCS: dict[str | None, list[Document]] = {}  # per extra_dir


def records(extra_dir=None) -> list[Document]:
    """All documents with their source and name, in the fixed order (cached in memory and on disk)."""
    key = None if extra_dir is None else str(Path(extra_dir).resolve())
    if key not in _DOCS:
        docs = _load_or_build(key)
        if not docs:
            raise RuntimeError(
                "the embedded corpus is empty: this Python installation ships neither pydoc_data nor the "
                f"standard library's .py sources (looked in {_stdlib_dir()}). Download shards instead: "
                "python -m nanochat.dataset -n 8"
            )
        _DOCS[key] = docs
    return _DOCS[key]


def documents(extra_dir=None) -> list[str]:
    """Every document of the corpus as a string, in the fixed order."""
    return [d.text for d in records(extra_dir)]


def split(name: str, extra_dir=None) -> list[str]:
    """The "train" or "val" documents: every VAL_EVERY-th document (index 0, 20, 40, ...) is validation."""
    if name not in ("train", "val"):
        raise ValueError(f"unknown split {name!r}: choose 'train' or 'val'")
    docs = documents(extra_dir)
    if name == "val":
        return docs[::VAL_EVERY]
    return [d for i, d in enumerate(docs) if i % VAL_EVERY != 0]


def describe(extra_dir=None) -> dict:
    """Size per source: {source: {"documents": n, "mb": megabytes of UTF-8}} plus a "total" entry."""
    stats: dict[str, dict] = {}
    for d in records(extra_dir):
        s = stats.setdefault(d.source, {"documents": 0, "mb": 0.0})
        s["documents"] += 1
        s["mb"] += len(d.text.encode("utf-8")) / 1e6
    total_docs, total_mb = sum(s["documents"] for s in stats.values()), sum(s["mb"] for s in stats.values())
    stats["total"] = {"documents": total_docs, "mb": total_mb}
    return stats


if __name__ == "__main__":
    extra = sys.argv[1] if len(sys.argv) > 1 else None
    stats = describe(extra)
    print(f"embedded corpus for Python {sys.version.split()[0]} (stdlib at {_stdlib_dir()})")
    for source, s in stats.items():
        print(f"  {source:<18} {s['documents']:>6} documents  {s['mb']:7.2f} MB")
    print(f"  split: {len(split('train', extra))} train / {len(split('val', extra))} val documents "
          f"(every {VAL_EVERY}th is val)")

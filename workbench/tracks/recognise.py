"""Which track a learner's file belongs to, read from its text (never imported: no torch, no learner code runs).

In order: the header comment the skeleton starts with (`# workbench: track optimizer, reference nanochat.muon`),
else the file name (`learner_muon.py`), else the top-level names the file defines — a verbatim copy of
nanochat/muon.py under any name is the Muon file of the optimizer track. A file with `GPTConfig`/`GPT`, and
anything not recognised, is the model track (learner_gpt.py and the GPT check).
"""

import ast
import functools
import os
import re
from dataclasses import dataclass

from workbench.course.workspace import read_learner_file
from workbench.tracks.base import Track, TrackFile, available_track_specs, find_track_file

HEADER = re.compile(r"^#\s*workbench:\s*track\s+(\w+)(?:\s*,\s*reference\s+([\w.]+))?", re.MULTILINE)
HEADER_LINES = 5  # the header is looked for in the first few lines only
MODEL_NAMES = {"GPTConfig", "GPT"}


@dataclass(frozen=True)
class Recognised:
    track: Track
    track_file: TrackFile | None  # None for the model track
    how: str  # "header", "file name", "names", "default": how it was told (shown by --json's reader)


def header_line(track: Track, reference_module: str) -> str:
    """The first line of a track file: what `recognise` reads first."""
    return f"# workbench: track {track}, reference {reference_module}"


def top_level_names(tree: ast.Module) -> set[str]:
    """Classes, functions and assigned names at the top of a module."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def def_lines(source: str) -> dict[str, int]:
    """{qualname: line of its `def`/`class`} for every function, class and method (one level of classes deep,
    nested classes too); {} when the file does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    lines = {}
    _collect_defs(tree.body, "", lines)
    return lines


def _collect_defs(body: list, prefix: str, lines: dict[str, int]) -> None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            lines.setdefault(prefix + node.name, node.lineno)
            if isinstance(node, ast.ClassDef):
                _collect_defs(node.body, prefix + node.name + ".", lines)


@functools.lru_cache(maxsize=None)
def _reference_names(track_file: TrackFile) -> frozenset[str]:
    tree = ast.parse(track_file.reference_path().read_text(encoding="utf-8"))
    return frozenset(top_level_names(tree))


def _by_names(names: set[str]) -> Recognised | None:
    """The track file whose exercises' top-level names the file defines best (all of them, and the most of its
    reference's names); None when no track file's exercises are all there."""
    best, best_score = None, 0.0
    for spec in available_track_specs():
        for tf in spec.files:
            wanted = {e.qualname.split(".")[0] for e in tf.exercises}
            if not wanted <= names:
                continue
            reference = _reference_names(tf)
            score = len(names & reference) / max(len(reference), 1)
            if score > best_score:
                best, best_score = Recognised(spec.track, tf, "names"), score
    return best


def recognise_text(text: str, file_name: str = "") -> Recognised:
    """The track of a file with this text and name (see the module's docstring for the order)."""
    head = "\n".join(text.splitlines()[:HEADER_LINES])
    match = HEADER.search(head)
    if match:
        try:
            track = Track(match.group(1))
        except ValueError:
            track = None
        if track is Track.MODEL:
            return Recognised(Track.MODEL, None, "header")
        if track is not None:
            tf = find_track_file(track, os.path.basename(file_name), match.group(2))
            if tf is not None:
                return Recognised(track, tf, "header")
    try:
        names = top_level_names(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        names = None
    if names is not None and MODEL_NAMES & names:
        return Recognised(Track.MODEL, None, "names")
    base = os.path.basename(file_name)
    for spec in available_track_specs():
        for tf in spec.files:
            if tf.learner_file == base:
                return Recognised(spec.track, tf, "file name")
    if names is not None:
        found = _by_names(names)
        if found is not None:
            return found
    return Recognised(Track.MODEL, None, "default")


def recognise(path) -> Recognised:
    """The track of the file at `path` (OSError when it cannot be read: missing, not a regular file, too big)."""
    return recognise_text(read_learner_file(path, errors="replace"), str(path))

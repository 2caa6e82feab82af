"""A track file's skeleton, made from its reference module's source with `ast` (never a stored copy).

Every function and method the track's exercises name keeps its decorators, signature and docstring (with the
exercise's notes and lesson added) and gets the body `raise NotImplementedError("TODO: <qualname>: <what to do>")`;
every other line of the reference is copied as it is, comments included. The file starts with the header
`recognise` reads (`# workbench: track optimizer, reference nanochat.muon`) and a short comment for the learner.
The reference changing is followed automatically; an exercise the reference no longer has raises KeyError.
"""

import ast
import textwrap

from workbench.tracks.base import Track, TrackFile, TrackSpec, track_spec
from workbench.tracks.recognise import header_line

MAX_LINE = 116  # the raise line is wrapped to stay under the project's 120 columns


def find_def(tree: ast.Module, qualname: str) -> ast.FunctionDef | None:
    """The `def` of a function or method (Class.method, nested classes too) at the top of a module."""
    body, node = tree.body, None
    for part in qualname.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def string_literal(text: str) -> str:
    """`text` as a double-quoted Python string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def docstring_block(text: str, indent: str) -> list[str]:
    """A triple-quoted docstring of `text` at `indent`, first line on the quotes, as nanochat writes them."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    width = MAX_LINE - len(indent)
    first, _, rest = text.partition("\n")
    first, *spill = textwrap.wrap(first, width - 6) or [""]
    rest = "\n".join(spill + ([rest] if rest else []))
    if not rest:
        return [f'{indent}"""{first}"""\n']
    lines = [f'{indent}"""{first}\n']
    for line in textwrap.dedent(rest).splitlines():
        lead = line[: len(line) - len(line.lstrip())]
        wrapped = textwrap.wrap(line, width, initial_indent="", subsequent_indent=lead) if line.strip() else [""]
        lines += [f"{indent}{part}\n" if part.strip() else "\n" for part in wrapped]
    return lines + [f'{indent}"""\n']


def raise_lines(message: str, indent: str) -> list[str]:
    """`raise NotImplementedError("...")`, split into implicitly joined strings when it would be too long."""
    one = f"{indent}raise NotImplementedError({string_literal(message)})\n"
    if len(one) <= MAX_LINE + 1:
        return [one]
    inner = indent + " " * 4
    parts = textwrap.wrap(message, MAX_LINE - len(inner) - 2, drop_whitespace=False)
    return ([f"{indent}raise NotImplementedError(\n"] + [f"{inner}{string_literal(p)}\n" for p in parts]
            + [f"{indent})\n"])


def exercise_docstring(node: ast.FunctionDef, exercise) -> str:
    """The reference's docstring, then the exercise's notes (shapes, hints), then where to read up."""
    summary = exercise.todo or exercise.check
    parts = [ast.get_docstring(node, clean=True) or summary[0].upper() + summary[1:] + "."]
    if exercise.notes:
        parts.append(exercise.notes.strip())
    if exercise.lesson:
        parts.append(f"Lesson: lessons/{exercise.lesson} § `{exercise.qualname}`")
    return "\n\n".join(parts)


def stub_body(node: ast.FunctionDef, exercise) -> list[str]:
    indent = " " * node.body[0].col_offset
    todo = exercise.todo or exercise.check
    return (docstring_block(exercise_docstring(node, exercise), indent)
            + raise_lines(f"TODO: {exercise.qualname}: {todo}", indent))


def intro(spec: TrackSpec, track_file: TrackFile) -> list[str]:
    """The comment under the header: what this file is, what to run, the exercises in order."""
    reference = track_file.reference_module.replace(".", "/") + ".py"
    lines = [header_line(spec.track, track_file.reference_module),
             f"# Your {track_file.learner_file}: part of the track \"{spec.title}\".",
             f"# It is {reference} with the functions listed below left for you to write. Each keeps",
             "# its signature and docstring (what goes in, what comes out, where to read up) and raises",
             "# NotImplementedError(\"TODO: ...\"); everything else is the reference's own code. Keep the names",
             "# and signatures: the training scripts can use this file in place of the reference.",
             f"# Check it on every save with `nanochat-workbench check {track_file.learner_file}`: it names the",
             "# next TODO and compares each function with the reference on the same inputs.",
             "# The exercises, in the order to write them:"]
    lines += [f"#   {i}. {e.qualname} — {e.check}" for i, e in enumerate(track_file.exercises, 1)]
    return [line + "\n" for line in lines] + ["\n"]


def skeleton_text(source: str, spec: TrackSpec, track_file: TrackFile) -> str:
    """The skeleton of `source` (the reference module's text) for `track_file`."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    spans = []
    for exercise in track_file.exercises:
        node = find_def(tree, exercise.qualname)
        if node is None or node.body[0].lineno == node.lineno:
            raise KeyError(f"{track_file.reference_module} has no {exercise.qualname} written over lines of its own "
                           f"(track {spec.track}): the track's spec and the reference disagree")
        spans.append((node.body[0].lineno, node.end_lineno, stub_body(node, exercise)))
    for first, last, body in sorted(spans, reverse=True):  # bottom-up: earlier line numbers stay valid
        lines[first - 1:last] = body
    return "".join(intro(spec, track_file) + lines)


def make_skeleton(track: Track, track_file: TrackFile) -> str:
    """The skeleton of one file of a track, from the reference module as it is now."""
    source = track_file.reference_path().read_text(encoding="utf-8")
    return skeleton_text(source, track_spec(track), track_file)

"""`nanochat-workbench init`: create a learner's workspace (skeletons and STATUS.md), never overwriting.

`--track model` (the default) writes the GPT skeleton and STATUS.md from workbench/course/templates/ (the
skeleton as it is, STATUS.md with the learner file's name filled in). `--track optimizer|data|training|engine`
writes that track's files instead, each made from its reference module (workbench/tracks/skeleton.py), and a
phase per track in STATUS.md: in a new STATUS.md, or added to the one already there. `--track all` is the model
and every track there is. If a file to write already exists nothing is written at all, and the message says how
to start fresh.
"""

import argparse
import functools
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nanochat.fsutil import read_regular_file
from workbench.tracks.base import TRACK_SPEC_MODULES, Track, TrackSpec, available_track_specs

TEMPLATES = Path(__file__).resolve().parent / "templates"
SKELETON_TEMPLATE = TEMPLATES / "learner_gpt.py"
STATUS_TEMPLATE = TEMPLATES / "STATUS.md"
DEFAULT_NAME = "learner_gpt.py"
STATUS_NAME = "STATUS.md"
MAX_LEARNER_BYTES = 4 << 20  # a model file is tens of kilobytes; a bigger one is not read
TRACK_CHOICES = tuple(str(t) for t in Track) + ("all",)

# names that, as a file in the learner's directory, would shadow a package the stack imports when Python runs there
_SHADOWED = {"torch", "nanochat", "workbench", "rustbpe", "numpy", "tiktoken", "pyarrow", "rich", "textual",
             "tokenizers", "yaml", "fastapi", "uvicorn", "watchfiles", "plotext", "psutil", "pytest"}


class WorkspaceError(Exception):
    """The workspace cannot be created; the message says why and what to do instead."""


class UsageError(WorkspaceError):
    """The arguments themselves are wrong (exit code 2)."""


@dataclass
class Workspace:
    directory: Path
    learner_file: Path  # the first file written (the GPT for the model track)
    status_file: Path
    files: list[Path] = field(default_factory=list)  # every learner file written, in order
    specs: list[TrackSpec] = field(default_factory=list)  # the tracks beyond the model that were laid out
    status_created: bool = True  # False: the tracks' phases were added to a STATUS.md that was there


def read_learner_file(path, errors: str = "strict") -> str:
    """The text of a learner's .py file, read only when it is a regular file of at most MAX_LEARNER_BYTES: a FIFO,
    a device or a huge file in its place is refused at once (an OSError; FileRefused says why), never waited on."""
    return read_regular_file(path, MAX_LEARNER_BYTES).decode("utf-8", errors)


def learner_file_in(workspace: Path) -> Path:
    """`learner_gpt.py`, else the one .py file in the workspace that defines GPTConfig (init --name other.py)."""
    workspace = Path(workspace)
    default = workspace / DEFAULT_NAME
    if default.exists():
        return default
    for path in sorted(workspace.glob("*.py")):
        try:
            if "class GPTConfig" in read_learner_file(path, errors="replace"):
                return path
        except OSError:
            continue
    return default


def check_learner_name(name: str) -> None:
    """A plain `.py` file name that does not shadow a module the stack imports."""
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise UsageError(f"--name {name!r} must be a plain file name such as {DEFAULT_NAME}; "
                         f"put the directory in the DIR argument instead")
    stem, ext = os.path.splitext(name)
    if ext != ".py" or not stem:
        raise UsageError(f"--name {name!r} must end in .py (it is the Python file you will write), e.g. my_gpt.py")
    if stem in _SHADOWED or stem in sys.stdlib_module_names:
        raise UsageError(f"--name {name!r} would shadow the {stem!r} module for any Python run in that directory; "
                         f"pick another name, e.g. my_gpt.py")


def selected_specs(track: str) -> tuple[bool, list[TrackSpec]]:
    """(whether the model is included, the specs of the tracks beyond it) for `--track`."""
    if track == "all":
        return True, available_track_specs()
    chosen = Track(track)
    if chosen is Track.MODEL:
        return True, []
    spec = next((s for s in available_track_specs() if s.track is chosen), None)
    if spec is None:
        raise UsageError(f"the {track} track is not part of this version of the workbench")
    return False, [spec]


def phase_section(spec: TrackSpec) -> str:
    """STATUS.md's section for a track: its files, its lessons and a box per exercise."""
    from workbench.course.phases import track_phase_number
    files = ", ".join(f"`{tf.learner_file}` (from `{tf.reference_module.replace('.', '/')}.py`)" for tf in spec.files)
    lessons = sorted({e.lesson for tf in spec.files for e in tf.exercises if e.lesson})
    lines = [f"## Phase {track_phase_number(spec.track)}: {spec.title}", "",
             f"Files: {files}.", "`nanochat-workbench check FILE` names the next function to write.", ""]
    if lessons:
        lines += ["Lessons: " + ", ".join(f"`lessons/{name}`" for name in lessons), ""]
    lines += [f"- [ ] `{e.qualname}` — {e.check}" for tf in spec.files for e in tf.exercises]
    return "\n".join(lines) + "\n"


def insert_sections(lines: list[str], sections: list[str]) -> None:
    """Put `sections` before the Milestones heading (at the end when there is none); a StatusDoc edit op."""
    at = next((i for i, line in enumerate(lines) if line.strip().lower() == "## milestones"), len(lines))
    new = []
    for text in sections:
        new += [line + "\n" for line in text.splitlines()] + ["\n"]
    if at == len(lines) and lines and lines[-1].strip():
        new.insert(0, "\n")
    lines[at:at] = new


def render_status(learner_name: str, specs=()) -> str:
    text = STATUS_TEMPLATE.read_text(encoding="utf-8").replace("{learner_file}", learner_name)
    if not specs:
        return text
    lines = text.splitlines(keepends=True)
    insert_sections(lines, [phase_section(spec) for spec in specs])
    return "".join(lines)


def add_phases(status: Path, specs: list[TrackSpec]) -> None:
    """Add the phases of `specs` that STATUS.md lacks, through the status document's safe merge."""
    from workbench.course.phases import track_phase_number
    from workbench.status.doc import StatusDoc, StatusDocError
    try:
        doc = StatusDoc.load(status)
        have = {p.number for p in doc.phases}
        missing = [phase_section(s) for s in specs if track_phase_number(s.track) not in have]
        if missing:
            doc.edit(functools.partial(insert_sections, sections=missing))
            doc.save()
    except (StatusDocError, OSError) as e:
        raise WorkspaceError(f"the track files were written, but their phases could not be added to {status}: {e}")


def planned_files(include_model: bool, specs: list[TrackSpec], directory: Path, name: str) -> list[tuple[Path, str]]:
    """(path, text) of every learner file to write."""
    from workbench.tracks.skeleton import make_skeleton
    files = [(directory / name, SKELETON_TEMPLATE.read_text(encoding="utf-8"))] if include_model else []
    for spec in specs:
        files += [(directory / tf.learner_file, make_skeleton(spec.track, tf)) for tf in spec.files]
    return files


def refuse_existing(existing: list[Path], learner: Path | None, status: Path) -> None:
    names = [p.name for p in existing]
    listed = (f"{names[0]} in {existing[0].parent}" if len(names) == 1 else
              f"{', '.join(names[:-1])} and {names[-1]} in {existing[0].parent}")
    hints = ["`nanochat-workbench init NEW_DIR` for a workspace elsewhere"]
    if learner in existing and status not in existing:
        hints.insert(0, f"`--name other_gpt.py` to keep {learner.name} and start a second file")
    hints.append("or move/delete " + ("them" if len(existing) > 1 else "it") + " yourself first")
    raise WorkspaceError(f"{listed} already exist{'s' if len(existing) == 1 else ''}; nothing was written "
                         f"(init never overwrites your work). To start fresh use " + ", ".join(hints) + ".")


def write_new(files: list[tuple[Path, str]], directory: Path) -> None:
    """Create every file (none may exist); on any failure remove the ones this call created."""
    created = []
    try:
        for path, text in files:
            with open(path, "x", encoding="utf-8", newline="\n") as f:  # "x": fail rather than overwrite a race
                created.append(path)
                f.write(text)
    except FileExistsError as e:
        for path in created:
            path.unlink(missing_ok=True)
        raise WorkspaceError(f"{e.filename} appeared while the workspace was being created; "
                             f"nothing was written") from None
    except OSError as e:
        for path in created:
            path.unlink(missing_ok=True)
        raise WorkspaceError(f"cannot write {e.filename or directory}: {e.strerror}") from None


def init_workspace(directory, name: str = DEFAULT_NAME, track: str = "model") -> Workspace:
    """Create `directory` (if needed) with the skeletons of `track` and STATUS.md. Raises WorkspaceError.

    With the model track (or all), STATUS.md must not exist yet; with other tracks only, an existing STATUS.md
    gets their phases added."""
    check_learner_name(name)
    include_model, specs = selected_specs(track)
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise WorkspaceError(f"{directory} is a file, not a directory; pass a directory to create the workspace in")
    status = directory / STATUS_NAME
    files = planned_files(include_model, specs, directory, name)
    keep_status = not include_model and (status.is_file() and not status.is_symlink())
    targets = [p for p, _ in files] + ([] if keep_status else [status])
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing:
        refuse_existing(existing, directory / name if include_model else None, status)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkspaceError(f"cannot create {directory}: {e.strerror}") from None
    status_text = render_status(name if include_model else DEFAULT_NAME, specs)
    write_new(files + ([] if keep_status else [(status, status_text)]), directory)
    if keep_status:
        add_phases(status, specs)
    return Workspace(directory, files[0][0], status, [p for p, _ in files], specs, not keep_status)


def _shown(ws: Workspace, path: Path) -> str:
    """The path as the learner can paste it into a shell (quoted when it has spaces or other special characters)."""
    return shlex.quote(str(path if ws.directory != Path(".") else Path(path.name)))


def next_steps(ws: Workspace) -> str:
    """What to tell the learner after init."""
    gpt = [p for p in ws.files if p.name not in {tf.learner_file for s in ws.specs for tf in s.files}]
    written = ", ".join(p.name for p in ws.files)
    status = "created" if ws.status_created else "added the tracks' phases to"
    lines = [f"Created {written} in {ws.directory} (every exercise a TODO); {status} {ws.status_file.name} "
             f"(your progress).", "", "Next:"]
    if gpt:
        gpt_file = _shown(ws, gpt[0])
        lines += [f"  1. open {gpt_file}: start with GPT.__init__ (lesson: lessons/03-embeddings-and-config.md)",
                  f"  2. nanochat-workbench check {gpt_file}    checks your code against the reference, "
                  f"names the next TODO",
                  f"  3. nanochat-workbench trace {gpt_file}    once the forward pass runs: shapes and statistics, "
                  f"layer by layer"]
    for spec in ws.specs:
        for tf in spec.files:
            first = tf.exercises[0]
            lesson = f" (lesson: lessons/{first.lesson})" if first.lesson else ""
            lines.append(f"  - {spec.track}: nanochat-workbench check {_shown(ws, ws.directory / tf.learner_file)}    "
                         f"start with {first.qualname}{lesson}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="workspace directory (default: here)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"file name of your GPT (default: {DEFAULT_NAME})")
    parser.add_argument("--track", choices=TRACK_CHOICES, default=str(Track.MODEL),
                        help="what to write: the GPT (model, the default), one of the tracks beyond it "
                             f"({', '.join(str(t) for t in TRACK_SPEC_MODULES)}), or all of them")


def run(args) -> int:
    """`nanochat-workbench init [DIR] [--name FILE] [--track TRACK]`."""
    try:
        ws = init_workspace(args.dir, args.name, args.track)
    except UsageError as e:
        print(f"nanochat-workbench init: error: {e}", file=sys.stderr)
        return 2
    except WorkspaceError as e:
        print(f"nanochat-workbench init: {e}", file=sys.stderr)
        return 1
    print(next_steps(ws))
    return 0

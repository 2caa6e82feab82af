"""`nanochat-workbench init`: create a learner's workspace (the GPT skeleton and STATUS.md), never overwriting.

Both files come from workbench/course/templates/. The skeleton is copied as it is; STATUS.md gets the learner
file's name filled in. If either file already exists nothing is written at all, and the message says how to start
fresh.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from nanochat.fsutil import read_regular_file

TEMPLATES = Path(__file__).resolve().parent / "templates"
SKELETON_TEMPLATE = TEMPLATES / "learner_gpt.py"
STATUS_TEMPLATE = TEMPLATES / "STATUS.md"
DEFAULT_NAME = "learner_gpt.py"
STATUS_NAME = "STATUS.md"
MAX_LEARNER_BYTES = 4 << 20  # a model file is tens of kilobytes; a bigger one is not read

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
    learner_file: Path
    status_file: Path


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


def render_status(learner_name: str) -> str:
    return STATUS_TEMPLATE.read_text(encoding="utf-8").replace("{learner_file}", learner_name)


def init_workspace(directory, name: str = DEFAULT_NAME) -> Workspace:
    """Create `directory` (if needed) with the skeleton as `name` and STATUS.md. Raises WorkspaceError."""
    check_learner_name(name)
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise WorkspaceError(f"{directory} is a file, not a directory; pass a directory to create the workspace in")
    learner, status = directory / name, directory / STATUS_NAME
    existing = [p for p in (learner, status) if p.exists() or p.is_symlink()]
    if existing:
        listed = " and ".join(str(p) for p in existing)
        hints = ["`nanochat-workbench init NEW_DIR` for a workspace elsewhere"]
        if learner in existing and status not in existing:
            hints.insert(0, f"`--name other_gpt.py` to keep {learner.name} and start a second file")
        hints.append("or move/delete " + ("them" if len(existing) > 1 else "it") + " yourself first")
        raise WorkspaceError(f"{listed} already exist{'s' if len(existing) == 1 else ''}; nothing was written "
                             f"(init never overwrites your work). To start fresh use " + ", ".join(hints) + ".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkspaceError(f"cannot create {directory}: {e.strerror}") from None

    created = []
    try:
        for path, text in ((learner, SKELETON_TEMPLATE.read_text(encoding="utf-8")), (status, render_status(name))):
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
    return Workspace(directory, learner, status)


def next_steps(ws: Workspace) -> str:
    """What to tell the learner after init."""
    shown = ws.learner_file if ws.directory != Path(".") else Path(ws.learner_file.name)
    return "\n".join([
        f"Created {ws.learner_file} (your GPT, every method a TODO) and {ws.status_file} (your progress).",
        "",
        "Next:",
        f"  1. open {shown}: start with GPT.__init__ (lesson: lessons/03-embeddings-and-config.md)",
        f"  2. nanochat-workbench check {shown}    checks your code against the reference, names the next TODO",
        f"  3. nanochat-workbench trace {shown}    once the forward pass runs: shapes and statistics, layer by layer",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="workspace directory (default: here)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"file name of your GPT (default: {DEFAULT_NAME})")


def run(args) -> int:
    """`nanochat-workbench init [DIR] [--name FILE]`."""
    try:
        ws = init_workspace(args.dir, args.name)
    except UsageError as e:
        print(f"nanochat-workbench init: error: {e}", file=sys.stderr)
        return 2
    except WorkspaceError as e:
        print(f"nanochat-workbench init: {e}", file=sys.stderr)
        return 1
    print(next_steps(ws))
    return 0

"""The issue log in STATUS.md: an error the learner met, filed as a dated entry they finish in their own words.

    add_issue_entry(workspace, "MLP.forward does not match", "MLP.forward: looks like relu instead of relu²")

appends to the issues section (the template's "Issues encountered", or an "Issue log" created at the end):

    - **2026-11-30 17:40** — MLP.forward does not match
      Error: `MLP.forward: looks like relu instead of relu²`
      Solution:
      Lesson learned:

A multi-line error (a traceback) goes in a fenced block inside the entry instead of the inline code. The write is
workbench/status/doc.py's safe merge: nothing else in the file changes, and a save the learner makes meanwhile is
kept. The TUI files the error it shows with one key.
"""

import re
from datetime import datetime

from workbench.status.doc import StatusDoc, update_status

SECTION = "Issue log"  # the title when the file has no issues section yet
MAX_ERROR_LINES = 40  # a traceback longer than this keeps its last lines (where the error is)


def issue_text(problem: str, error: str) -> str:
    """The entry's body: the problem on the dated line, then the error, then the two lines the learner fills."""
    problem = " ".join(problem.split())
    if not problem:
        raise ValueError("the problem is empty")
    lines = [line.rstrip() for line in error.strip("\n").splitlines() if line.strip() or line == ""]
    lines = lines[-MAX_ERROR_LINES:]
    if not "".join(lines).strip():
        body = ["Error: (no message)"]
    elif len(lines) == 1:
        body = [f"Error: {_inline_code(lines[0].strip())}"]
    else:
        fence = "`" * max(3, _longest_backtick_run(error) + 1)
        body = ["Error:", fence, *lines, fence]
    return "\n".join([problem, *body, "Solution:", "Lesson learned:"])


def add_issue_entry(workspace, problem: str, error: str, when=None) -> str | None:
    """Append a dated issue entry to the STATUS.md of `workspace` (a folder, or the STATUS.md itself).

    `when` is a datetime or a string (default: now). Returns None, or why nothing was written, in one line
    (no STATUS.md, read-only, ...). Raises ValueError for an empty problem.
    """
    text = issue_text(problem, error)
    return update_status(workspace, lambda doc: _stage(doc, text, when))


def _stage(doc: StatusDoc, text: str, when) -> None:
    doc.add_issue(text, when=when or datetime.now(), title=SECTION)


def _inline_code(text: str) -> str:
    ticks = "`" * (_longest_backtick_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)

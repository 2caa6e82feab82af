"""The lessons the TUI can show: `lessons/*.md` with their YAML front matter (title, teaches, minutes, questions).

A lesson that cannot be parsed is still listed (with its file name as title and the problem noted), so one bad
file never hides the others.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LESSON_NAME = re.compile(r"^\d+-.+\.md$")  # 07-attention.md; README.md and other notes are not lessons
FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


@dataclass
class Lesson:
    path: Path
    title: str
    body: str  # the Markdown after the front matter
    teaches: list[str] = field(default_factory=list)
    minutes: int | None = None
    questions: list[dict] = field(default_factory=list)  # [{"q": ..., "a": ...}]
    problem: str | None = None  # why the front matter could not be read, if it could not

    @property
    def name(self) -> str:
        return self.path.name


def lessons_dir() -> Path:
    """$NANOCHAT_LESSONS_DIR, else the lessons/ folder beside the installed packages (the repository root)."""
    env = os.environ.get("NANOCHAT_LESSONS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "lessons"


def load_lesson(path: Path) -> Lesson:
    text = path.read_text(encoding="utf-8", errors="replace")
    fallback_title = path.stem.split("-", 1)[-1].replace("-", " ").capitalize()
    m = FRONT_MATTER.match(text)
    if not m:
        return Lesson(path, fallback_title, text)
    body = text[m.end():]
    try:
        meta = yaml.safe_load(m.group(1)) or {}
        if not isinstance(meta, dict):
            raise ValueError("the front matter is not a mapping")
    except (yaml.YAMLError, ValueError) as e:
        return Lesson(path, fallback_title, body, problem=f"front matter unreadable: {e}")
    questions = [q for q in (meta.get("questions") or []) if isinstance(q, dict) and q.get("q")]
    minutes = meta.get("minutes")
    return Lesson(
        path, str(meta.get("title") or fallback_title), body,
        teaches=[str(t) for t in (meta.get("teaches") or [])],
        minutes=minutes if isinstance(minutes, int) else None,
        questions=questions,
    )


def list_lessons(directory: Path | None = None) -> list[Lesson]:
    """Every lesson in file-name order; raises FileNotFoundError when the folder is missing."""
    directory = directory or lessons_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"no lessons folder at {directory}")
    return [load_lesson(p) for p in sorted(directory.glob("*.md")) if LESSON_NAME.match(p.name)]


def heading_for(table_of_contents: list[tuple[int, str, str | None]], qualname: str) -> str | None:
    """The block id of the heading that names `qualname` (e.g. "## `CausalSelfAttention.forward`")."""
    exact = [bid for _, title, bid in table_of_contents if title.strip().strip("`") == qualname]
    if exact:
        return exact[0]
    word = re.compile(rf"(?<![\w.]){re.escape(qualname)}(?![\w.])")
    return next((bid for _, title, bid in table_of_contents if word.search(title)), None)

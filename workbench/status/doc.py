"""Read and update the learner's STATUS.md without ever losing what they wrote in it.

STATUS.md belongs to the learner: they reword items, add sections, write answers. The workbench edits it too
(ticks, milestones, the comparison table, log entries it is asked to add), so every edit here is a small
line-level change on the original text, never a re-render:

- items are found by the backticked qualname in a checkbox line (`- [ ] \\`GPT.forward\\` ...`), wherever the line is
  and however the rest of it is worded; milestones by their bold label; questions by their id (`**Q3.1**`);
- sections that are missing are skipped when reading; a write that needs a missing section (the log, the issues,
  the comparison table) appends it at the end of the file instead of dropping the entry;
- line endings (LF or CRLF), a BOM, odd bytes and a missing final newline all survive unchanged.

Writes are staged as operations and applied by `save()`, which never loses a byte the learner saved, even while
their editor saves at the same moment (in place: truncate, then write; or by rename):
- the file is read only once it has stopped changing; one that is empty, or only the beginning of the last copy
  known whole (what a save in place caught between truncate and write looks like), must stay unchanged for a
  longer spell before it is trusted, and an empty STATUS.md is never written;
- the operations are merged into what is on disk now (a three-way merge whose base is the text they were
  staged on); the file is compared with what was merged into just before the replace, and the result is
  swapped in (renameat2 RENAME_EXCHANGE, mode kept), which hands back the file that was there at that
  instant: when that is not the one merged into (the learner saved in between, or their editor is still
  writing into it), it is swapped straight back and the merge starts again from what is there;
- the learner's last version that the workbench replaced is kept in `.STATUS.md.bak`, beside it;
- a read-only STATUS.md is left alone (a clear error); temp files of an interrupted write are removed at the
  next load.

Regression policy: a tick made by the workbench carries a `<!-- wb -->` marker at the end of its line (Markdown
renderers hide it). `tick(..., untick=...)` and `set_milestones(..., unreached=...)` clear only ticks that carry
the marker; a box the learner ticked by hand is never unticked. A learner who unticks a workbench tick by hand
gets it ticked again at the next passing check.
"""

import errno
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime

from nanochat.fsutil import FileRefused, atomic_exchange, exchange, read_regular_file, remove_stale_temps
from workbench.check.result import Status
from workbench.course.phases import known_qualnames, phase_of
from workbench.course.workspace import STATUS_NAME

MARK = "<!-- wb -->"

MILESTONES: tuple[str, ...] = (
    "Model builds", "Forward runs", "Backward runs", "Training step completes", "Loss decreases",
    "Matches reference", "Generation works", "Full pipeline",
)

_HEADING = re.compile(r"^\ufeff? {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CHECKBOX = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+\[)([ xX])(\].*)$")
_LIST_ITEM = re.compile(r"^( {0,3})(?:[-*+]|\d+[.)])\s+(.*)$")
_TOP_ITEM = re.compile(r"^( ?)(?:[-*+]|\d+[.)])\s+(.*)$")  # a list item that is not nested in another one
_BACKTICKED = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_QUESTION_ID = re.compile(r"^(?:\*\*|__)?(Q\d+(?:\.\d+)?)[.:)]?(?:\*\*|__)?[.:)]?\s*(.*)$", re.IGNORECASE)
_PHASE_TITLE = re.compile(r"\bphase\s+(\d+)", re.IGNORECASE)
_TABLE_ROW = re.compile(r"^\s*\|")
_SEPARATOR_CELL = re.compile(r"^\s*:?-{1,}:?\s*$")
_LESSON_FILE = re.compile(r"lessons/(\d+-[\w.-]+?\.md)")
_LOG_WHEN = re.compile(r"^(?:\*\*|__)(.+?)(?:\*\*|__)\s*(?:[—–-]+\s*)?(.*)$")


class StatusDocError(Exception):
    """STATUS.md cannot be read or written; the message says why."""


def milestone_key(label: str) -> str:
    """"Matches reference" -> "matches_reference": the identity of a milestone, whatever its case and spacing."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


@dataclass
class Item:
    qualname: str
    ticked: bool
    by_workbench: bool  # the tick (or an old tick) carries the <!-- wb --> marker
    line: int  # 0-based line index in the file
    phase: int | None
    text: str  # the whole line, without its line ending


@dataclass
class Milestone:
    key: str
    label: str
    done: bool
    by_workbench: bool
    line: int


@dataclass
class Question:
    id: str | None  # "Q3.1", or None for a question the learner added without an id
    text: str
    phase: int | None
    line: int
    answer: str  # the lines under the question, de-indented, without "> " quote markers ("" when unanswered)
    answer_line: int = -1  # index of the first line after the question's own text (where its answer starts)
    end: int = -1  # index of the line after its answer (the next question or heading, or the end of the file)


@dataclass
class LogEntry:
    when: str | None
    text: str
    line: int


@dataclass
class Section:
    level: int
    title: str
    line: int
    end: int  # exclusive: the next heading of the same or a higher level, or the end of the file


@dataclass
class PhaseSection:
    number: int
    title: str
    line: int
    items: list[Item] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    lessons: list[str] = field(default_factory=list)  # lesson files its own text names ("07-attention.md")


@dataclass
class Changes:
    """What one tick()/set_milestones() call did (to the text as loaded; save() may re-apply it to newer text)."""
    ticked: set = field(default_factory=set)
    unticked: set = field(default_factory=set)
    kept: set = field(default_factory=set)  # asked to untick, but ticked by the learner: left alone
    missing: set = field(default_factory=set)  # no such item/milestone in the file


# ---------------------------------------------------------------------------------------------------------------
# parsing: a list of lines (each with its own line ending) -> a read-only model with line indices


def _content(line: str) -> str:
    return line.rstrip("\r\n")


def _eol(line: str) -> str:
    return line[len(_content(line)):]


def _split_lines(text: str) -> list[str]:
    # split on "\n" only (str.splitlines would also split on \x0b, \u2028, ...), keeping the endings
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _sections(lines: list[str], code: set[int]) -> list[Section]:
    found = []
    for i, line in enumerate(lines):
        h = None if i in code else _HEADING.match(_content(line))
        if h:
            found.append(Section(len(h.group(1)), (h.group(2) or "").strip(), i, len(lines)))
    for k, sec in enumerate(found):
        sec.end = next((later.line for later in found[k + 1:] if later.level <= sec.level), len(lines))
    return found


def _code_lines(lines: list[str]) -> set[int]:
    """Indices of lines inside fenced code blocks (fences included): never parsed as items."""
    inside, fence = set(), None
    for i, line in enumerate(lines):
        m = _FENCE.match(_content(line))
        if fence is not None:
            inside.add(i)
            if m and m.group(1).startswith(fence):
                fence = None
        elif m:
            fence = m.group(1)[0] * len(m.group(1))
            inside.add(i)
    return inside


class _Parsed:
    """Everything the workbench needs to find in the text, with line indices."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.code = _code_lines(lines)
        self.sections = _sections(lines, self.code)
        self.items: list[Item] = []
        self.milestones: list[Milestone] = []
        self.questions: list[Question] = []
        self.phases: list[PhaseSection] = []
        for sec in self.sections:
            m = _PHASE_TITLE.search(sec.title)
            if m:
                intro_end = min([s.line for s in self.sections if s.line > sec.line] + [sec.end])
                intro = "".join(lines[sec.line + 1:intro_end])
                self.phases.append(PhaseSection(int(m.group(1)), sec.title, sec.line,
                                                lessons=_LESSON_FILE.findall(intro)))
        self._parse_checkboxes()
        self._parse_questions()

    def enclosing(self, index: int) -> list[Section]:
        return [s for s in self.sections if s.line < index < s.end]

    def phase_at(self, index: int) -> int | None:
        for sec in reversed(self.enclosing(index)):
            m = _PHASE_TITLE.search(sec.title)
            if m:
                return int(m.group(1))
        return None

    def _phase_section(self, number: int | None) -> PhaseSection | None:
        return next((p for p in self.phases if p.number == number), None)

    def _parse_checkboxes(self):
        known = known_qualnames()  # the GPT's methods and every track's exercises
        for i, line in enumerate(self.lines):
            if i in self.code:
                continue
            m = _CHECKBOX.match(_content(line))
            if not m:
                continue
            ticked, rest = m.group(2) in "xX", m.group(3)
            marked = MARK in rest
            qualname = next((q for q in _BACKTICKED.findall(rest) if q.strip() in known), None)
            if qualname is not None:
                phase = self.phase_at(i) or phase_of(qualname.strip())
                item = Item(qualname.strip(), ticked, marked, i, phase, _content(line))
                self.items.append(item)
                section = self._phase_section(self.phase_at(i))
                if section is not None:
                    section.items.append(item)
                continue
            if any("milestone" in s.title.lower() for s in self.enclosing(i)):
                bold = _BOLD.search(rest)
                label = (bold.group(1) or bold.group(2)) if bold else re.split(r"\s[—–-]\s", rest[1:], 1)[0]
                label = label.replace(MARK, "").strip()
                if label:
                    self.milestones.append(Milestone(milestone_key(label), label, ticked, marked, i))

    def _parse_questions(self):
        for sec in self.sections:
            if "question" not in sec.title.lower():
                continue
            body_end = min([s.line for s in self.sections if s.line > sec.line] + [sec.end])
            starts = []
            for i in range(sec.line + 1, body_end):
                m = _TOP_ITEM.match(_content(self.lines[i]))
                if m and i not in self.code and not _CHECKBOX.match(_content(self.lines[i])):
                    starts.append(i)
            for k, start in enumerate(starts):
                end = starts[k + 1] if k + 1 < len(starts) else body_end
                self.questions.append(self._question(start, end))
            for q in self.questions:
                section = self._phase_section(q.phase)
                if section is not None and q not in section.questions and sec.line < q.line < sec.end:
                    section.questions.append(q)

    def _question(self, start: int, end: int) -> Question:
        first = _TOP_ITEM.match(_content(self.lines[start])).group(2).strip()
        m = _QUESTION_ID.match(first)
        qid, text = (m.group(1).upper(), m.group(2).strip()) if m else (None, first)
        # the question text may wrap onto indented lines; the answer starts at the first quote or blank line
        body = [_content(line) for line in self.lines[start + 1:end]]
        k = 0
        while (k < len(body) and body[k].strip() and not body[k].lstrip().startswith(">")
               and not text.rstrip().endswith("?")):
            text += " " + body[k].strip()
            k += 1
        answer = []
        for raw in body[k:]:
            s = raw.strip()
            if s.startswith(">"):
                s = s[1:].lstrip(" ") if s[1:2] != "" else ""
            answer.append(s)
        return Question(qid, text, self.phase_at(start), start, "\n".join(answer).strip("\n"), start + 1 + k, end)

    def log_section(self, word: str) -> Section | None:
        """The first section whose title has `word` ("log", "issue"); an "Issue log" is not the learning log."""
        return next((s for s in self.sections if word in s.title.lower()
                     and not (word == "log" and "issue" in s.title.lower())), None)

    def entries(self, word: str) -> list[LogEntry]:
        sec = self.log_section(word)
        if sec is None:
            return []
        out = []
        for i in range(sec.line + 1, sec.end):
            m = _TOP_ITEM.match(_content(self.lines[i]))
            if not m or i in self.code or any(s.line > sec.line and s.line <= i for s in self.sections):
                continue
            w = _LOG_WHEN.match(m.group(2))
            out.append(LogEntry(w.group(1), w.group(2), i) if w else LogEntry(None, m.group(2), i))
        return out

    def table(self, first_cell: str) -> tuple[int, int] | None:
        """(first, end) line indices of the first table whose header row starts with `first_cell`."""
        i, n = 0, len(self.lines)
        while i < n:
            if i not in self.code and _TABLE_ROW.match(self.lines[i]):
                j = i
                while j < n and _TABLE_ROW.match(self.lines[j]) and j not in self.code:
                    j += 1
                cells = _cells(_content(self.lines[i]))
                if cells and cells[0].strip("`* ").lower() == first_cell.lower():
                    return i, j
                i = j
            else:
                i += 1
        return None

    def comparison_table(self) -> tuple[int, int] | None:
        """The learner-vs-reference table: its header starts with a "Component" cell."""
        return self.table(COMPARISON.header[0])

    def check_table(self) -> tuple[int, int] | None:
        """The table of the check's method rows: its header starts with a "Method" cell."""
        return self.table(CHECKS.header[0])


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row, unescaped from "\\|" and stripped."""
    s = row.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", s)]


def _cell_text(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


# ---------------------------------------------------------------------------------------------------------------
# edits: functions on a list of lines, applied in memory and again by save() if the file changed underneath


def _newline(lines: list[str]) -> str:
    crlf = sum(1 for line in lines if line.endswith("\r\n"))
    lf = sum(1 for line in lines if line.endswith("\n")) - crlf
    return "\r\n" if crlf > lf else "\n"


def _set_box(line: str, ticked: bool, marked: bool) -> str:
    body, eol = _content(line), _eol(line)
    m = _CHECKBOX.match(body)
    body = m.group(1) + ("x" if ticked else " ") + m.group(3)
    if marked and MARK not in body:
        body = body.rstrip() + " " + MARK
    if not marked and MARK in body:
        body = re.sub(r"[ \t]*" + re.escape(MARK), "", body)
    return body + eol


def _insert(lines: list[str], at: int, new: list[str]) -> None:
    """Insert whole lines at index `at`, giving the line before them a line ending if it had none."""
    nl = _newline(lines)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += nl
    lines[at:at] = [text + nl for text in new]


def _last_content_line(lines: list[str], start: int, end: int) -> int:
    """Index of the last non-blank line in lines[start:end] (start itself if all are blank)."""
    for i in range(end - 1, start - 1, -1):
        if lines[i].strip():
            return i
    return start


def _apply_ticks(lines: list[str], tick: set, untick: set) -> Changes:
    parsed, changes = _Parsed(lines), Changes()
    present = {item.qualname for item in parsed.items}
    changes.missing |= (tick | untick) - present
    for item in parsed.items:
        if item.qualname in tick and not item.ticked:
            lines[item.line] = _set_box(lines[item.line], True, True)
            changes.ticked.add(item.qualname)
        elif item.qualname in untick and item.ticked:
            if item.by_workbench:
                lines[item.line] = _set_box(lines[item.line], False, False)
                changes.unticked.add(item.qualname)
            else:
                changes.kept.add(item.qualname)
    return changes


def _apply_milestones(lines: list[str], reached: set, unreached: set) -> Changes:
    parsed, changes = _Parsed(lines), Changes()
    present = {m.key for m in parsed.milestones}
    changes.missing |= (reached | unreached) - present
    for m in parsed.milestones:
        if m.key in reached and not m.done:
            lines[m.line] = _set_box(lines[m.line], True, True)
            changes.ticked.add(m.key)
        elif m.key in unreached and m.done:
            if m.by_workbench:
                lines[m.line] = _set_box(lines[m.line], False, False)
                changes.unticked.add(m.key)
            else:
                changes.kept.add(m.key)
    return changes


def _apply_milestone_line(lines: list[str], label: str, text: str, reached: bool) -> bool:
    """Put one measured milestone's line in place; False when the line is left as it is (see put_milestone)."""
    parsed, key = _Parsed(lines), milestone_key(label)
    line = f"[{'x' if reached else ' '}] **{label}** — {text}" + (f" {MARK}" if reached else "")
    found = next((m for m in parsed.milestones if m.key == key), None)
    if found is not None:
        if found.done and (found.by_workbench or not reached):
            return False
        bullet = _CHECKBOX.match(_content(lines[found.line])).group(1)[:-1]  # "- " with the learner's indent
        lines[found.line] = bullet + line + _eol(lines[found.line])
        return True
    section = next((s for s in parsed.sections if "milestone" in s.title.lower()), None)
    if section is None:
        after = _append_section(lines, "Milestones")
        _insert(lines, after + 1, ["", "- " + line])
        return True
    body_end = min([s.line for s in parsed.sections if s.line > section.line] + [section.end])
    after = _last_content_line(lines, section.line, body_end)
    prev = _content(lines[after])
    in_list = bool(_LIST_ITEM.match(prev)) or (prev.startswith("  ") and bool(prev.strip()))
    _insert(lines, after + 1, ["- " + line] if in_list else ["", "- " + line])
    return True


def _find_question(parsed: _Parsed, question: str) -> Question:
    wanted = question.strip()
    by_id = [q for q in parsed.questions if q.id and q.id == wanted.upper()]
    if by_id:
        return by_id[0]
    norm = " ".join(wanted.lower().split())
    exact = [q for q in parsed.questions if " ".join(q.text.lower().split()) == norm]
    if len(exact) == 1:
        return exact[0]
    partial = [q for q in parsed.questions if norm and norm in " ".join(q.text.lower().split())]
    if len(partial) == 1:
        return partial[0]
    known = ", ".join(q.id or q.text[:30] for q in parsed.questions) or "none"
    why = "matches several questions" if len(partial) > 1 else "matches no question"
    raise KeyError(f"{question!r} {why} in STATUS.md (questions there: {known})")


def _apply_answer(lines: list[str], question: str, answer: str) -> None:
    parsed = _Parsed(lines)
    q = _find_question(parsed, question)
    end = next((k for k in [x.line for x in parsed.questions] + [s.line for s in parsed.sections]
                + [len(lines)] if k > q.line), len(lines))
    last = _last_content_line(lines, q.line, end)
    indent = re.match(r"\s*", lines[q.line]).group(0) + "  "
    quoted = [f"{indent}> {text}".rstrip() for text in answer.strip("\n").split("\n")]
    if last > q.line and lines[last].lstrip().startswith(">"):
        quoted.insert(0, f"{indent}>")  # a paragraph break inside the same quote
    _insert(lines, last + 1, quoted)


def parse(lines: list[str]) -> _Parsed:
    """What the workbench reads in `lines` (items, milestones, questions, phases, sections), with line indices:
    for edits of one's own through StatusDoc.edit()."""
    return _Parsed(lines)


def set_answer_lines(lines: list[str], question: Question, answer: str) -> None:
    """Replace the answer under `question` (as parsed from `lines`) with `answer`, quoted; "" removes it."""
    last = _last_content_line(lines, question.answer_line - 1, question.end)
    indent = re.match(r"\s*", lines[question.line]).group(0) + "  "
    del lines[question.answer_line:max(last + 1, question.answer_line)]
    _insert(lines, question.answer_line, _quoted(answer, indent))


def add_question_lines(lines: list[str], text: str, answer: str, phase: int | None, section: str) -> None:
    """Add the question `text` with `answer` under it: in phase `phase`'s questions subsection with the next id
    of that phase ("Q3.6"; the subsection is made at the end of the phase if it has none), or, with no phase,
    without an id at the end of the section titled `section` (appended to the file if missing)."""
    parsed = _Parsed(lines)
    home = next((p for p in parsed.phases if p.number == phase), None) if phase is not None else None
    if home is not None:
        sec = next(s for s in parsed.sections if s.line == home.line)
        taken = [int(q.id.split(".")[1]) for q in parsed.questions
                 if q.id and q.id.startswith(f"Q{phase}.") and q.id.split(".")[1].isdigit()]
        entry = [f"- **Q{phase}.{max(taken, default=0) + 1}** {text}"] + _quoted(answer, "  ")
        target = next((s for s in parsed.sections if sec.line < s.line < sec.end and "question" in s.title.lower()),
                      None)
        if target is None:
            at = _last_content_line(lines, sec.line, sec.end) + 1
            _insert(lines, at, ["", "#" * (sec.level + 1) + " Questions to answer", ""] + entry)
            return
    else:
        entry = [f"- {text}"] + _quoted(answer, "  ")
        target = next((s for s in parsed.sections if s.title.lower() == section.lower()), None)
        if target is None:
            _insert(lines, _append_section(lines, section) + 1, [""] + entry)
            return
    body_end = min([s.line for s in parsed.sections if s.line > target.line] + [target.end])
    after = _last_content_line(lines, target.line, body_end)
    prev = _content(lines[after])
    in_list = bool(_LIST_ITEM.match(prev)) or (prev.startswith("  ") and bool(prev.strip()))
    _insert(lines, after + 1, entry if in_list else [""] + entry)


def _quoted(text: str, indent: str) -> list[str]:
    text = text.strip("\n")
    return [f"{indent}> {line}".rstrip() for line in text.split("\n")] if text.strip() else []


def _append_section(lines: list[str], title: str) -> int:
    """Append "## title" at the end of the file; return the index after which its body goes."""
    nl = _newline(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += nl
    if lines and lines[-1].strip():
        lines.append(nl)
    lines.append(f"## {title}{nl}")
    return len(lines) - 1


def _apply_entry(lines: list[str], word: str, title: str, text: str, when: str) -> None:
    parsed = _Parsed(lines)
    sec = parsed.log_section(word)
    if sec is None:
        after = _append_section(lines, title)
    else:
        # entries go at the end of the section's own text, before any subsection
        body_end = min([s.line for s in parsed.sections if s.line > sec.line] + [sec.end])
        after = _last_content_line(lines, sec.line, body_end)
    body = text.strip("\n").split("\n")
    entry = [f"- **{when}** — {body[0]}".rstrip()] + [f"  {t}".rstrip() for t in body[1:]]
    prev = _content(lines[after]) if after < len(lines) else ""
    if not _LIST_ITEM.match(prev) and not (prev.startswith("  ") and prev.strip()):
        entry.insert(0, "")  # a blank line between a heading or paragraph and the list
    _insert(lines, after + 1, entry)


@dataclass(frozen=True)
class TableKind:
    """A table the workbench fills: the section it lives in and its header (the first cell finds it)."""
    section: str
    header: tuple[str, ...]
    intro: str


COMPARISON = TableKind("Learner vs reference", ("Component", "Learner", "Reference", "Compared"),
                       "Filled in by `nanochat-workbench compare`; add rows of your own if you like.")
CHECKS = TableKind("Method checks", ("Method", "Status", "Largest difference", "What the check found"),
                   "Filled in by the workbench after each check: each method against the reference's, with the "
                   "largest absolute difference between their outputs.")
OLD_COMPARISON_HEADER = ["Component", "Learner", "Reference", "Status"]  # before the columns said what they hold


def _table_lines(kind: TableKind) -> list[str]:
    return ["", kind.intro, "", "| " + " | ".join(kind.header) + " |", "|" + "---|" * len(kind.header)]


def _new_table(lines: list[str], kind: TableKind, before: str | None) -> tuple[int, int]:
    """Add `kind`'s section with an empty table: before the section titled `before`, else at the end."""
    parsed = _Parsed(lines)
    ahead = next((s for s in parsed.sections if before and s.title.lower() == before.lower()), None)
    if ahead is None:
        after = _append_section(lines, kind.section)
        _insert(lines, after + 1, _table_lines(kind))
        return after + 4, after + 6
    nl = _newline(lines)
    block = [f"{'#' * ahead.level} {kind.section}"] + _table_lines(kind) + [""]
    lines[ahead.line:ahead.line] = [text + nl for text in block]
    return ahead.line + 4, ahead.line + 6


def _apply_table(lines: list[str], rows: list[list[str]], kind: TableKind, before: str | None = None) -> None:
    where = _Parsed(lines).table(kind.header[0])
    if where is None:
        where = _new_table(lines, kind, before)
    first, end = where
    if kind is COMPARISON:
        _rename_old_header(lines, first)
    existing = {}
    for i in range(first + 1, end):
        cells = _cells(_content(lines[i]))
        if cells and not all(_SEPARATOR_CELL.match(c) for c in cells):
            existing.setdefault(_row_key(cells[0]), i)
    appended: dict[str, str] = {}
    for row in rows:
        key = _row_key(row[0])
        if key in existing:
            i = existing[key]
            old = _cells(_content(lines[i]))
            cells = [_cell_text(v) for v in row] + [c.replace("|", "\\|") for c in old[len(row):]]
            lines[i] = "| " + " | ".join(cells) + " |" + _eol(lines[i])
        else:
            appended[key] = "| " + " | ".join(_cell_text(v) for v in row) + " |"
    if appended:
        _insert(lines, end, list(appended.values()))


def _apply_check_table(lines: list[str], rows: list[list[str]]) -> None:
    _migrate_comparison_table(lines)
    _apply_table(lines, rows, CHECKS, before=COMPARISON.section)


def _rename_old_header(lines: list[str], first: int) -> None:
    """The learner-vs-reference table's header as earlier templates had it names its last column."""
    if _cells(_content(lines[first])) == OLD_COMPARISON_HEADER:
        lines[first] = "| " + " | ".join(COMPARISON.header) + " |" + _eol(lines[first])


def _migrate_comparison_table(lines: list[str]) -> None:
    """Remove the method rows earlier versions wrote into the learner-vs-reference table (`name` | detail |
    max |Δ| | status), whose header did not fit them: the check's rows have a table of their own now. Rows in any
    other shape are kept; the old header gets its last column's name."""
    where = _Parsed(lines).comparison_table()
    if where is None:
        return
    _rename_old_header(lines, where[0])
    known, statuses = known_qualnames(), {status.value for status in Status}
    for i in range(where[1] - 1, where[0], -1):
        cells = _cells(_content(lines[i]))
        if (len(cells) == 4 and cells[0].startswith("`") and cells[0].strip("`") in known and cells[3] in statuses
                and (not cells[2] or cells[2].startswith("max |Δ|"))):
            del lines[i]


def _row_key(cell: str) -> str:
    return cell.replace("\\|", "|").strip().strip("`").strip().lower()


def _as_row(row) -> list[str]:
    if isinstance(row, dict):
        return [str(row.get("component", "")), str(row.get("learner", "")), str(row.get("reference", "")),
                str(row.get("compared", row.get("status", "")))]
    row = [str(v) for v in row]
    if not row:
        raise ValueError("a comparison row needs at least the component name")
    return row


# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fingerprint:
    inode: int
    mtime_ns: int
    size: int
    sha256: str


class StatusDoc:
    """The learner's STATUS.md: read it, stage edits, `save()` them atomically without losing concurrent edits."""

    def __init__(self, path: str, raw: bytes):
        self.path = path
        self._raw = raw  # the text on disk the staged edits were made on: the base of the merge in save()
        self._original = raw.decode("utf-8", errors="surrogateescape")
        self._lines = _split_lines(self._original)
        self._ops: list = []
        self._parsed_cache: tuple[int, _Parsed] | None = None
        self._before_replace = None  # test hook: called with the temp path just before the swap

    @classmethod
    def load(cls, path) -> "StatusDoc":
        real = os.path.realpath(os.fspath(path))  # a symlinked STATUS.md is edited where it really lives
        remove_stale_temps(real, STALE_TEMP_S)
        return cls(real, _read(real)[0])

    # -- reading ----------------------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The current text, with the staged edits applied."""
        return "".join(self._lines)

    @property
    def dirty(self) -> bool:
        return bool(self._ops)

    def _parsed(self) -> _Parsed:
        key = hash(self.text)
        if self._parsed_cache is None or self._parsed_cache[0] != key:
            self._parsed_cache = (key, _Parsed(list(self._lines)))
        return self._parsed_cache[1]

    @property
    def items(self) -> list[Item]:
        return self._parsed().items

    @property
    def milestones(self) -> list[Milestone]:
        return self._parsed().milestones

    @property
    def questions(self) -> list[Question]:
        return self._parsed().questions

    @property
    def phases(self) -> list[PhaseSection]:
        return self._parsed().phases

    @property
    def log(self) -> list[LogEntry]:
        return self._parsed().entries("log")

    @property
    def issues(self) -> list[LogEntry]:
        return self._parsed().entries("issue")

    @property
    def comparison_rows(self) -> list[list[str]]:
        """The learner-vs-reference table's rows (header and separator left out)."""
        return self._rows(self._parsed().comparison_table())

    @property
    def check_rows(self) -> list[list[str]]:
        """The method-checks table's rows (header and separator left out)."""
        return self._rows(self._parsed().check_table())

    def _rows(self, where) -> list[list[str]]:
        if where is None:
            return []
        rows = [_cells(_content(self._lines[i])) for i in range(where[0] + 1, where[1])]
        return [r for r in rows if not all(_SEPARATOR_CELL.match(c) for c in r)]

    def ticked(self) -> set:
        """Qualnames whose box is ticked (by anyone)."""
        return {item.qualname for item in self.items if item.ticked}

    # -- staged edits -----------------------------------------------------------------------------------------

    def edit(self, op):
        """Apply `op` (a function that edits the list of lines in place) now, and again in save() if the file
        changed on disk meanwhile: the way to make an edit of your own that keeps the learner's changes."""
        self._ops.append(op)
        return op(self._lines)

    def tick(self, qualnames, untick=()) -> Changes:
        """Tick the items of `qualnames` (with the workbench marker) and clear the workbench's ticks of `untick`.

        Items the learner ticked by hand stay ticked (reported in `kept`); unknown names are reported in `missing`.
        """
        tick, untick = set(qualnames), set(untick) - set(qualnames)
        return self.edit(lambda lines: _apply_ticks(lines, tick, untick))

    def set_milestones(self, reached=(), unreached=()) -> Changes:
        """Tick milestones by label or key ("Loss decreases" / "loss_decreases"); the same policy as tick()."""
        reached = {milestone_key(m) for m in reached}
        unreached = {milestone_key(m) for m in unreached} - reached
        return self.edit(lambda lines: _apply_milestones(lines, reached, unreached))

    def put_milestone(self, label: str, text: str, reached: bool) -> bool:
        """Write a measured milestone as `- [x] **label** — text` (ticked with the marker when `reached`).

        Its line is found by the label's key, or added at the end of the milestones section (a "Milestones"
        section is appended when there is none). A milestone the workbench already marked reached keeps its line
        (the date it was first reached); a box the learner ticked by hand is not unticked by a measurement that
        falls short. Returns False when the line was left as it was.
        """
        return self.edit(lambda lines: _apply_milestone_line(lines, label, text, reached))

    def add_answer(self, question: str, answer: str) -> None:
        """Add `answer` as a quote under the question with this id ("Q3.1") or text (exact, or a unique part).

        Raises KeyError when no question (or more than one) matches.
        """
        if not answer.strip():
            raise ValueError("the answer is empty")
        _find_question(self._parsed(), question)  # fail now, not at save()
        self.edit(lambda lines: _apply_answer(lines, question, answer))

    def add_log_entry(self, text: str, when=None) -> None:
        """Append a dated entry to the learning log (a new "Learning log" section at the end if there is none)."""
        self._add_entry("log", "Learning log", text, when)

    def add_issue(self, text: str, when=None, title: str = "Issues encountered") -> None:
        """Append a dated entry to the issues section (`title`, created at the end if the file has none)."""
        self._add_entry("issue", title, text, when)

    def _add_entry(self, word, title, text, when) -> None:
        if not text.strip():
            raise ValueError("the entry is empty")
        if when is None:
            when = datetime.now()
        if isinstance(when, datetime):
            when = when.strftime("%Y-%m-%d %H:%M")
        self.edit(lambda lines: _apply_entry(lines, word, title, text, str(when)))

    def update_comparison_table(self, rows) -> None:
        """Upsert rows of the learner-vs-reference table, matched by their first cell (the component).

        A row is (component, learner, reference, how they compare) or a dict with the keys component, learner,
        reference, compared. Rows the learner added, and extra columns they added, are kept. Without a table (a
        header row starting "Component") one is appended in a "Learner vs reference" section.
        """
        rows = [_as_row(r) for r in rows]
        if rows:
            self.edit(lambda lines: _apply_table(lines, rows, COMPARISON))

    def update_check_table(self, rows) -> None:
        """Upsert the check's rows (method, status, largest difference, what the check found), matched by the
        method. The table is made on first use, in a "Method checks" section before "Learner vs reference" (at
        the end without one); method rows an older version put in the learner-vs-reference table move here."""
        rows = [[str(v) for v in r] for r in rows]
        if rows:
            self.edit(lambda lines: _apply_check_table(lines, rows))

    # -- writing ----------------------------------------------------------------------------------------------

    def save(self) -> bool:
        """Write the staged edits. Returns False when there was nothing to write.

        The edits are merged into what is on disk now (see the module docstring for how nothing the learner
        saves meanwhile is lost). Raises StatusDocError when STATUS.md is read-only, empty, missing, still
        being written after SETTLE_MAX_S, or changed so that an edit no longer fits (then nothing is written).
        """
        if not self._ops:
            return False
        _check_writable(self.path)
        for _ in range(ATTEMPTS):
            theirs = _read_settled(self.path, _good.get(self.path, b""), _own_write.get(self.path))
            _good[self.path] = theirs
            if theirs != self._raw:
                self._rebase(theirs)  # the merge: the edits, re-applied to what the learner saved since
            data = self.text.encode("utf-8", errors="surrogateescape")
            if _swap_in(self.path, data, theirs, self._before_replace):
                self._rebase(data)
                self._ops = []
                return True
        raise StatusDocError(f"{self.path} kept changing while the workbench tried to update it; try again")

    def reload(self) -> None:
        """Re-read the file from disk, keeping the staged edits (applied to the new text)."""
        self._rebase(_read(self.path)[0])

    def _rebase(self, raw: bytes) -> None:
        original = raw.decode("utf-8", errors="surrogateescape")
        lines = _split_lines(original)
        for op in self._ops:
            try:
                op(lines)
            except KeyError as e:  # e.g. the learner deleted the question an answer was for, meanwhile
                raise StatusDocError(f"{self.path} changed on disk and a staged edit no longer fits: {e.args[0]}; "
                                     f"nothing was written") from None
        self._raw, self._original, self._lines = raw, original, lines


def status_file(path) -> str:
    """The STATUS.md that `path` names: the file itself, or the one in the workspace folder `path`."""
    path = os.fspath(path)
    return os.path.join(path, STATUS_NAME) if os.path.isdir(path) else path


def update_status(path, stage) -> str | None:
    """Load the STATUS.md at `path` (the file, or the workspace folder it is in), let `stage(doc)` stage its
    edits, and save them if they change anything.

    Returns None, or what went wrong in one line for the learner (read-only, missing, empty, kept changing, ...).
    """
    path = status_file(path)
    try:
        doc = StatusDoc.load(path)
        before = doc.text
        stage(doc)
        if doc.text != before:  # nothing changed: leave the file (and its watchers) alone
            doc.save()
    except StatusDocError as e:
        return str(e)
    except PermissionError as e:
        return f"no permission to write {path} ({e.strerror}): the change is shown here but not saved"
    except OSError as e:
        return f"cannot write {path}: {e.strerror or e}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# the file itself: read only when whole, replaced only by a swap that hands back what it replaced

MAX_BYTES = 8 << 20  # a STATUS.md bigger than this is refused (a learner's notes are kilobytes)
QUIET_S = 0.05  # a file written more recently than this may be in the middle of a save: wait
SHRINK_QUIET_S = 1.0  # an empty file, or a cut-off copy of the last one known whole, must stay unchanged this long
SETTLE_MAX_S = 10.0  # the longest a save waits for the file to settle
ATTEMPTS = 10
STALE_TEMP_S = 300.0  # temp files beside STATUS.md older than this were left by a writer that was killed

_good: dict[str, bytes] = {}  # path -> the last copy this process read settled, or wrote
_own_write: dict[str, bytes] = {}  # path -> sha256 of what this process last wrote there


def backup_path(path) -> str:
    """Where the learner's last version that the workbench replaced is kept: `.STATUS.md.bak` beside it."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.bak")


def _check_writable(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise StatusDocError(f"{path} does not exist (create one with `nanochat-workbench init`)") from None
    if not stat.S_IMODE(st.st_mode) & 0o222 or not os.access(path, os.W_OK):
        raise StatusDocError(f"{path} is read-only, so the workbench leaves it as it is (make it writable to have "
                             f"ticks and notes saved)")


def _read_settled(path: str, good: bytes, own: bytes | None, allow_empty: bool = False) -> bytes:
    """`path`'s bytes once it is not in the middle of a save: unchanged for QUIET_S, or for SHRINK_QUIET_S when it
    looks cut off (empty, or a strict beginning of `good`, the last copy known whole: what a save in place shows
    between its truncate and its last write). A copy whose sha256 is `own` (the workbench's own last write) is
    whole by definition. Raises StatusDocError when it is empty (unless `allow_empty`), or
    still changing and cut off after SETTLE_MAX_S."""
    deadline = time.monotonic() + SETTLE_MAX_S
    raw, fp = _read(path)
    stable_since = time.monotonic()
    while True:
        short = not raw or (len(raw) < len(good) and good.startswith(raw))
        quiet = SHRINK_QUIET_S if short else QUIET_S
        if time.time() - fp.mtime_ns / 1e9 >= quiet or time.monotonic() - stable_since >= quiet:
            break
        if hashlib.sha256(raw).digest() == own:
            break
        if time.monotonic() > deadline:
            if short:
                raise StatusDocError(f"{path} looks cut short and keeps changing (an editor still saving it?); "
                                     f"nothing was written")
            break
        time.sleep(0.02)
        again, fp_again = _read(path)
        if fp_again != fp:
            raw, fp, stable_since = again, fp_again, time.monotonic()
    if not raw and not allow_empty:
        raise StatusDocError(f"{path} is empty; the workbench does not write into an empty STATUS.md (the last "
                             f"version it replaced is in {backup_path(path)})")
    return raw


def _swap_in(path: str, data: bytes, expected: bytes, before_swap) -> bool:
    """Put `data` at `path` if what is there is `expected`; False when it is not (the learner saved just then).

    The file is compared just before the swap, and what the swap hands back is compared again: a save that
    landed in between (or an editor that opened the file to save in place and is still writing into it) is put
    straight back at `path`, so the learner's file stays where it belongs and the caller merges again. What was
    replaced becomes `.STATUS.md.bak` unless it was this process's own last write."""
    def unchanged(tmp):
        if before_swap is not None:
            before_swap(tmp)
        return _read(path)[0] == expected
    replaced = atomic_exchange(path, data, before_swap=unchanged)
    if replaced is None:
        return False
    try:
        swapped_out = read_regular_file(replaced, MAX_BYTES)
    except OSError:
        swapped_out = None
    if swapped_out != expected:
        _swap_back(path, replaced, data)
        return False
    if hashlib.sha256(swapped_out).digest() == _own_write.get(path) or not swapped_out:
        os.unlink(replaced)
    else:
        os.replace(replaced, backup_path(path))
    _own_write[path], _good[path] = hashlib.sha256(data).digest(), data
    return True


def _swap_back(path: str, replaced: str, data: bytes) -> None:
    """Undo a swap: the learner's file goes back to `path`. If they saved once more in between, the file that
    comes back is theirs too: it is kept as the backup (the caller's next read sees the newer one)."""
    try:
        exchange(replaced, path)
    except OSError as e:
        if e.errno != errno.ENOTSUP:
            raise
        os.replace(replaced, path)  # no swapping here: `replaced` is a hard link of the learner's file
        return
    try:
        ours = read_regular_file(replaced, MAX_BYTES) == data
    except OSError:
        ours = False
    if ours:
        os.unlink(replaced)
    else:
        os.replace(replaced, backup_path(path))


def _read(path: str) -> tuple[bytes, _Fingerprint]:
    try:
        raw = read_regular_file(path, MAX_BYTES)
        st = os.stat(path)
    except FileNotFoundError:
        raise StatusDocError(f"{path} does not exist (create one with `nanochat-workbench init`)") from None
    except FileRefused as e:
        raise StatusDocError(str(e).replace("is a folder", "is a directory")) from None
    except OSError as e:
        raise StatusDocError(f"cannot read {path}: {e.strerror}") from None
    return raw, _Fingerprint(st.st_ino, st.st_mtime_ns, st.st_size, hashlib.sha256(raw).hexdigest())

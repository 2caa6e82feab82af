"""The learner's lesson notes inside STATUS.md: answers to each lesson's questions, and free notes.

They live in a "## Lesson notes" section at the end of STATUS.md, one "### Lesson NN" subsection per lesson,
written by the lessons screen as the learner types:

    ### Lesson 07

    *07-attention.md — Attention*

    **Q: Why is the score divided by sqrt(D)?**

    > my answer, as many lines as I like

    **Notes**

    > free notes

Each save replaces that one subsection (and only it) through workbench.status.doc's staged edit, so the write is
atomic and an edit the learner saved elsewhere in the file in the meantime is kept. Headings avoid the words the
status doc reads meaning into ("question", "log", "issue", "phase").
"""

import re

from workbench.status.doc import StatusDoc, _split_lines

SECTION = "Lesson notes"
INTRO = "The workbench's lessons screen writes this section as you type (one subsection per lesson)."
_Q = re.compile(r"^\*\*Q: (.*)\*\*\s*$")
_NOTES = "**Notes**"


def lesson_heading(lesson_name: str) -> str:
    return f"### Lesson {lesson_name.split('-', 1)[0]}"


def read_notes(doc: StatusDoc, lesson_name: str) -> tuple[dict[str, str], str]:
    """(answers by question text, free notes) for one lesson, as last saved."""
    lines = [line.rstrip("\r\n") for line in _split_lines(doc.text)]
    start, end = _subsection(lines, lesson_name)
    answers, notes, current = {}, [], None
    if start is None:
        return answers, ""
    for line in lines[start + 1:end]:
        m = _Q.match(line)
        if m:
            current = m.group(1)
            answers[current] = []
        elif line.strip() == _NOTES:
            current = _NOTES
        elif line.startswith(">") and current is not None:
            text = line[1:]
            text = text[1:] if text.startswith(" ") else text
            (notes if current == _NOTES else answers[current]).append(text)
    return {q: "\n".join(a) for q, a in answers.items()}, "\n".join(notes)


def write_notes(doc: StatusDoc, lesson_name: str, title: str, answers: list[tuple[str, str]], notes: str) -> None:
    """Stage the replacement of the lesson's subsection (answers in the lesson's question order); save() writes."""
    body = [f"*{lesson_name} — {title}*"]
    for question, answer in answers:
        body += ["", f"**Q: {' '.join(question.split())}**", ""] + _quoted(answer)
    body += ["", _NOTES, ""] + _quoted(notes)

    def op(lines: list[str]) -> None:
        nl = "\r\n" if sum(line.endswith("\r\n") for line in lines) * 2 > len(lines) else "\n"
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += nl
        plain = [line.rstrip("\r\n") for line in lines]
        start, end = _subsection(plain, lesson_name)
        block = [lesson_heading(lesson_name), ""] + body + [""]
        if start is None:
            section = next((i for i, t in enumerate(plain) if t.strip() == f"## {SECTION}"), None)
            if section is None:
                prefix = ([""] if lines and plain[-1].strip() else []) + [f"## {SECTION}", "", INTRO, ""]
                lines.extend(t + nl for t in prefix)
                start = end = len(lines)
            else:
                start = end = _section_end(plain, section)
        lines[start:end] = [t + nl for t in block]

    doc.edit(op)


def _quoted(text: str) -> list[str]:
    text = text.strip("\n")
    return [f"> {line}".rstrip() for line in text.split("\n")] if text.strip() else [">"]


def _subsection(lines: list[str], lesson_name: str) -> tuple[int | None, int]:
    """Index of the lesson's heading inside the notes section and the end (exclusive) of its body."""
    section = next((i for i, t in enumerate(lines) if t.strip() == f"## {SECTION}"), None)
    if section is None:
        return None, len(lines)
    section_end = _section_end(lines, section)
    heading = lesson_heading(lesson_name)
    for i in range(section + 1, section_end):
        if lines[i].strip() == heading:
            end = next((k for k in range(i + 1, section_end) if lines[k].startswith("#")), section_end)
            return i, end
    return None, section_end


def _section_end(lines: list[str], section: int) -> int:
    return next((k for k in range(section + 1, len(lines)) if re.match(r"^#{1,2} ", lines[k])), len(lines))

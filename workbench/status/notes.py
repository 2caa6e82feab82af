"""The lessons screen's notes inside STATUS.md: the answers to each lesson's questions, and free notes.

An answer typed under a lesson's question lands under that question in STATUS.md, with the questions the learner
answers there: the question is found by its text, and a lesson question STATUS.md does not have yet is added,
tagged with its lesson, to the "Questions to answer" of the first phase whose text names the lesson (with the next
id of that phase), or to a "Questions from the lessons" section for a lesson no phase names:

    - **Q3.6** (lesson 07) Why are the scores divided by √head_dim before the softmax?
      > so the softmax starts out soft

Free notes go into a "## Lesson notes" section, one "### Lesson NN" subsection per lesson:

    ### Lesson 07

    *07-attention.md — Attention*

    > free notes

Each save is a staged edit of workbench.status.doc (re-applied to what is on disk when the learner saved the
file meanwhile, atomic, the learner's last version kept in .STATUS.md.bak). An answer is rewritten only when the
pane's text differs from the one in the file. Subsection headings avoid the words the status doc reads meaning
into ("question", "log", "issue", "phase"). Notes files written before answers moved under their questions (a
"**Q: ...**" block per answer in the lesson's subsection) are still read, and move at the next save.
"""

import re

from workbench.status.doc import Question, StatusDoc, add_question_lines, parse, set_answer_lines

SECTION = "Lesson notes"
QUESTIONS_SECTION = "Questions from the lessons"
INTRO = "The workbench's lessons screen writes your free notes here as you type (one subsection per lesson)."
_TAG = re.compile(r"^\(lesson (\d+)\)\s*", re.IGNORECASE)
_OLD_Q = re.compile(r"^\*\*Q: (.*)\*\*\s*$")  # an answer in the lesson's subsection, as earlier versions wrote it
_OLD_NOTES = "**Notes**"


def lesson_number(lesson_name: str) -> str:
    """"07-attention.md" -> "07"."""
    return lesson_name.split("-", 1)[0]


def lesson_heading(lesson_name: str) -> str:
    return f"### Lesson {lesson_number(lesson_name)}"


def _plain(text: str) -> str:
    """A question's text without its lesson tag, whitespace collapsed: what matching compares."""
    return " ".join(_TAG.sub("", text.strip(), count=1).split())


def _tag_of(question: Question) -> int | None:
    m = _TAG.match(question.text)
    return int(m.group(1)) if m else None


def read_notes(doc: StatusDoc, lesson_name: str) -> tuple[dict[str, str], str]:
    """(answers by question text, free notes) for one lesson, as STATUS.md holds them now."""
    number = int(lesson_number(lesson_name)) if lesson_number(lesson_name).isdigit() else None
    answers = {_plain(q.text): q.answer for q in doc.questions if number is not None and _tag_of(q) == number}
    lines = [line.rstrip("\r\n") for line in doc.text.split("\n")]
    old_answers, notes = _read_subsection(lines, lesson_name)
    for question, answer in old_answers.items():
        answers.setdefault(question, answer)
    return answers, notes


def write_notes(doc: StatusDoc, lesson_name: str, title: str, answers: list[tuple[str, str]], notes: str) -> None:
    """Stage the answers (each under its question) and the free notes of one lesson; save() writes them."""
    doc.edit(lambda lines: _apply_notes(lines, lesson_name, title, answers, notes))


def _apply_notes(lines: list[str], lesson_name: str, title: str, answers: list[tuple[str, str]], notes: str):
    number = lesson_number(lesson_name)
    for question, answer in answers:
        text = " ".join(question.split())
        parsed = parse(lines)
        found = _find(parsed.questions, text, number)
        if found is not None:
            if found.answer != answer.strip("\n"):
                set_answer_lines(lines, found, answer)
        elif answer.strip():
            phase = next((p.number for p in parsed.phases if lesson_name in p.lessons), None)
            add_question_lines(lines, f"(lesson {number}) {text}", answer, phase, QUESTIONS_SECTION)
    _write_subsection(lines, lesson_name, title, notes)


def _find(questions: list[Question], text: str, number: str) -> Question | None:
    """The question in STATUS.md with this text: the one tagged with this lesson first, then any other."""
    same = [q for q in questions if _plain(q.text).casefold() == text.casefold()]
    tagged = [q for q in same if number.isdigit() and _tag_of(q) == int(number)]
    return (tagged or same or [None])[0]


# ---- the free notes: a subsection per lesson in "## Lesson notes" ---------------------------------------------


def _read_subsection(lines: list[str], lesson_name: str) -> tuple[dict[str, str], str]:
    """(answers an earlier version kept here, free notes) from the lesson's subsection."""
    start, end = _subsection(lines, lesson_name)
    answers, notes, current = {}, [], _OLD_NOTES
    if start is None:
        return {}, ""
    for line in lines[start + 1:end]:
        m = _OLD_Q.match(line)
        if m:
            current = m.group(1)
            answers[current] = []
        elif line.strip() == _OLD_NOTES:
            current = _OLD_NOTES
        elif line.startswith(">"):
            text = line[1:]
            (notes if current == _OLD_NOTES else answers[current]).append(text[1:] if text.startswith(" ") else text)
    return {q: "\n".join(a).strip("\n") for q, a in answers.items()}, "\n".join(notes).strip("\n")


def _write_subsection(lines: list[str], lesson_name: str, title: str, notes: str) -> None:
    """Replace the lesson's subsection with its free notes (made only when there are notes to keep)."""
    nl = "\r\n" if sum(line.endswith("\r\n") for line in lines) * 2 > len(lines) else "\n"
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += nl
    plain = [line.rstrip("\r\n") for line in lines]
    start, end = _subsection(plain, lesson_name)
    if start is None and not notes.strip():
        return
    quoted = [f"> {line}".rstrip() for line in notes.strip("\n").split("\n")] if notes.strip() else [">"]
    block = [lesson_heading(lesson_name), "", f"*{lesson_name} — {title}*", ""] + quoted + [""]
    if start is None:
        section = next((i for i, t in enumerate(plain) if t.strip() == f"## {SECTION}"), None)
        if section is None:
            prefix = ([""] if lines and plain[-1].strip() else []) + [f"## {SECTION}", "", INTRO, ""]
            lines.extend(t + nl for t in prefix)
            start = end = len(lines)
        else:
            start = end = _section_end(plain, section)
    lines[start:end] = [t + nl for t in block]


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

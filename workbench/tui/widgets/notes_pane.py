"""The notes pane beside a lesson: an answer box under each of the lesson's questions, and free notes.

It only edits text; every change is posted up as a `NoteEdited` message and the app saves it into STATUS.md
(debounced). The lesson's own answer to each question stays folded until the learner asks for it.
"""

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Collapsible, Label, Markdown, TextArea

from workbench.course.lessons import Lesson


@dataclass
class NoteEdited(Message):
    """The whole pane's text after an edit (the app saves it, debounced)."""

    lesson: str  # lesson file name
    title: str
    answers: list[tuple[str, str]]  # (question, answer) in the lesson's order
    notes: str


class NotesPane(VerticalScroll):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lesson: Lesson | None = None
        self._questions: dict[str, str] = {}  # TextArea id -> question text
        self._saved: tuple[list, str] | None = None  # the text last reported, to skip non-edits

    def compose(self) -> ComposeResult:
        yield Label("Open a lesson to take notes.", classes="notes-empty")

    async def show(self, lesson: Lesson, answers: dict[str, str], notes: str) -> None:
        """Rebuild the pane for `lesson` with the answers and notes already in STATUS.md."""
        self.lesson = lesson
        self._questions.clear()
        await self.remove_children()
        widgets = [Label("Your answers", classes="notes-heading")]
        if not lesson.questions:
            widgets.append(Label("This lesson has no questions.", classes="notes-empty"))
        for i, question in enumerate(lesson.questions):
            q = str(question["q"]).strip()
            box_id = f"answer-{i}"
            self._questions[box_id] = q
            widgets.append(Label(f"Q{i + 1}. {q}", classes="notes-question"))
            box = TextArea(answers.get(q, ""), id=box_id, classes="notes-answer", soft_wrap=True,
                           show_line_numbers=False, compact=True, placeholder="your answer")
            widgets.append(box)
            if question.get("a"):
                widgets.append(Collapsible(Markdown(str(question["a"])), title="the lesson's answer",
                                           collapsed=True, classes="notes-reveal"))
        widgets.append(Label("Notes (saved in STATUS.md)", classes="notes-heading"))
        widgets.append(TextArea(notes, id="free-notes", classes="notes-free", soft_wrap=True,
                                show_line_numbers=False, compact=True, placeholder="anything worth keeping"))
        self._saved = ([(q, answers.get(q, "")) for q in self._questions.values()], notes)
        await self.mount_all(widgets)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        if self.lesson is None or not self.is_mounted:
            return
        try:
            answers = [(q, self.query_one(f"#{box_id}", TextArea).text) for box_id, q in self._questions.items()]
            notes = self.query_one("#free-notes", TextArea).text
        except NoMatches:  # still mounting
            return
        if (answers, notes) == self._saved:
            return  # loading the pane, not an edit
        self._saved = (answers, notes)
        self.post_message(NoteEdited(self.lesson.name, self.lesson.title, answers, notes))

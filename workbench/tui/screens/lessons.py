"""The lessons screen: lesson list, a Markdown reader with table of contents and search (across every lesson),
and a notes pane. Code blocks wrap rather than run off the right edge; diagrams scroll sideways.

Opening a lesson from the companion (key l) jumps to the section for the method the learner is on: every
lesson has a heading naming each method it teaches in backticks, e.g. "## `CausalSelfAttention.forward`".
"""

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, MarkdownViewer, OptionList
from textual.widgets.markdown import MarkdownBlock, MarkdownFence

from workbench.course.lessons import Lesson, heading_for, list_lessons
from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.widgets.lesson_list import LessonList
from workbench.tui.widgets.notes_pane import NotesPane
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar


WRAPPED_LANGUAGES = {"python", "py", "bash", "sh", "console", "toml", "json"}


class LessonsScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("slash", "search", "Search", key_display="/",
                tooltip="Search every lesson (enter: the next match, then the next lesson that has it)"),
        Binding("t", "toggle_toc", "Contents", tooltip="The lesson's table of contents, in the list's place"),
        Binding("n", "focus_notes", "Notes", tooltip="Your answers and notes, saved into STATUS.md as you type"),
        Binding("m", "app.open_reference_lesson('math')", "Primer",
                tooltip="The math primer: dot products, softmax, shapes, gradients, cross-entropy"),
        Binding("escape", "close", "Close search / notes", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lessons: list[Lesson] = []
        self.current: Lesson | None = None
        self._hits: list[MarkdownBlock] = []
        self._hit_index = 0
        self._last_query = ""

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="lessons-body"):
            yield LessonList(id="lesson-list")
            with Vertical(id="lesson-reader"):
                yield Input(placeholder="search the lessons: enter for the next match, esc to close",
                            id="lesson-search")
                yield MarkdownViewer(id="lesson-viewer", show_table_of_contents=False, open_links=False)
            yield NotesPane(id="notes")
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode, self.query_one(TopBar).file = "lessons", self.app.learner_path.name
        try:
            self.lessons = list_lessons()
        except FileNotFoundError as e:
            self.app.notify(f"{e}. Lessons ship with the repository: run from a checkout, or set "
                            f"NANOCHAT_LESSONS_DIR to a folder of lessons.", title="No lessons", severity="warning")
        self.query_one(LessonList).show(self.lessons)
        if self.app.lesson_request is None and self.lessons:
            self.open_lesson(self.lessons[0].name, None)
        self.watch(self.app, "lesson_request", self._open_request)

    def _open_request(self, request) -> None:
        if request is not None:
            self.open_lesson(*request)

    @on(OptionList.OptionSelected, "#lesson-list")
    def _lesson_chosen(self, event: OptionList.OptionSelected) -> None:
        self.open_lesson(event.option.id, None)

    @work(exclusive=True, group="lesson-load", exit_on_error=False)
    async def open_lesson(self, name: str | None, qualname: str | None) -> None:
        """Load a lesson into the reader (and its notes), then scroll to `qualname`'s section if given."""
        lesson = next((x for x in self.lessons if x.name == name), None)
        if lesson is None:
            if name:
                self.app.notify(f"Lesson {name} is not in the lessons folder yet.", severity="warning")
            return
        viewer = self.query_one(MarkdownViewer)
        if lesson is not self.current:
            self.current = lesson
            self._hits = []
            self.query_one(LessonList).highlight_lesson(lesson.name)
            self.sub_title = lesson.title
            body = lesson.body if not lesson.problem else f"> **{lesson.problem}**\n\n{lesson.body}"
            await viewer.document.update(body)
            for fence in viewer.document.query(MarkdownFence):  # code wraps; a diagram keeps its lines
                fence.set_class(fence.lexer.lower() in WRAPPED_LANGUAGES, "-wrap")
            answers, notes = self.app.notes_for(lesson)
            await self.query_one(NotesPane).show(lesson, answers, notes)
        if qualname:
            block_id = heading_for(viewer.document.table_of_contents, qualname)
            if block_id:
                heading = viewer.document.query_one(f"#{block_id}")
                # a freshly loaded document has no heights until it has been laid out (later on a busy machine)
                for _ in range(250):
                    if heading.size.height > 0:
                        break
                    await asyncio.sleep(0.02)
                viewer.call_after_refresh(viewer.scroll_to_widget, heading, top=True, animate=False)
            else:
                self.app.notify(f"{lesson.name} has no section for {qualname}.", severity="information")
        else:
            viewer.scroll_home(animate=False)

    def action_toggle_toc(self) -> None:
        """The table of contents takes the lesson list's (and the notes') place, so the text keeps its width."""
        viewer = self.query_one(MarkdownViewer)
        viewer.show_table_of_contents = not viewer.show_table_of_contents
        self.set_class(viewer.show_table_of_contents, "-toc-open")

    def action_focus_notes(self) -> None:
        """Go to the notes (on a narrow terminal they take the lesson list's place; n again gives it back)."""
        if self.has_class("-narrow") and self.has_class("-notes-open") and self.query_one("#notes").has_focus_within:
            self.remove_class("-notes-open")
            self.query_one("#lesson-list").focus()
            return
        self.add_class("-notes-open")
        boxes = self.query("#notes TextArea")
        if boxes:
            self.call_after_refresh(boxes.first().focus)

    def action_search(self) -> None:
        search = self.query_one("#lesson-search", Input)
        search.add_class("-open")
        search.focus()

    def action_close(self) -> None:
        """esc: close the search if it is open, else (on a narrow terminal) the notes."""
        if self.query_one("#lesson-search", Input).has_class("-open"):
            self.close_search()
        elif self.has_class("-notes-open"):
            self.remove_class("-notes-open")
            self.query_one("#lesson-list").focus()
        else:
            self.action_leave_input()

    def close_search(self) -> None:
        search = self.query_one("#lesson-search", Input)
        search.remove_class("-open")
        for block in self._hits:
            block.remove_class("-search-hit")
        self._hits = []
        self.query_one(MarkdownViewer).document.focus()

    @on(Input.Submitted, "#lesson-search")
    async def _search(self, event: Input.Submitted) -> None:
        """enter: the next match in this lesson; past its last one, the first match in the next lesson that has
        the text (all lessons are searched, in order, wrapping round)."""
        query = event.value.strip().lower()
        if not query:
            return
        if query != self._last_query or not self._hits:
            self._find_hits(query)
        else:
            self._hit_index += 1
        if self._hit_index >= len(self._hits):
            following = self._next_lesson_with(query)
            if following is None and not self._hits:
                self.app.notify(f"No “{event.value}” in any lesson.", severity="information")
                return
            if following is not None:
                await self.open_lesson(following.name, None).wait()
                self._find_hits(query)
            self._hit_index = 0
        self.query_one(MarkdownViewer).scroll_to_widget(self._hits[self._hit_index], top=True, animate=False)
        where = self.current.title if self.current else ""
        self.notify(f"match {self._hit_index + 1} of {len(self._hits)} in “{where}”", timeout=1.5)

    def _find_hits(self, query: str) -> None:
        for block in self._hits:
            block.remove_class("-search-hit")
        document = self.query_one(MarkdownViewer).document
        # the innermost blocks holding the text, in document order
        self._hits = [b for b in document.query(MarkdownBlock)
                      if query in b._content.plain.lower() and not b.query(MarkdownBlock)]
        self._hit_index, self._last_query = 0, query
        for block in self._hits:
            block.add_class("-search-hit")

    def _next_lesson_with(self, query: str) -> Lesson | None:
        """The first lesson after the current one (wrapping round) whose text holds `query`; not the current."""
        if not self.lessons:
            return None
        start = self.lessons.index(self.current) + 1 if self.current in self.lessons else 0
        order = self.lessons[start:] + self.lessons[:start]
        return next((x for x in order if x is not self.current and query in x.body.lower()), None)

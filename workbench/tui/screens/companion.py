"""The companion screen: live feedback on the learner's file, refreshed on every save.

It only displays the app's state (the shown file's report, checklist, run state); the watching and checking
happen in the app. The file shown is the learner file saved last (learner_gpt.py or a track's file), or the one
picked with `T`.
"""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, TabbedContent, TabPane

from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.tracks import present
from workbench.tui.widgets.checklist import Checklist
from workbench.tui.widgets.component_table import ComponentTable
from workbench.tui.widgets.loss_panel import LossPanel
from workbench.tui.widgets.next_step import NextStep
from workbench.tui.widgets.prints_log import PrintsLog
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.shapes_table import ShapesTable
from workbench.tui.widgets.side_by_side import SideBySide
from workbench.tui.widgets.top_bar import TopBar


class CompanionScreen(WorkbenchScreen):
    # the footer shows what a learner needs here (the app's l, h, e again, visible); ? and the palette list the rest
    BINDINGS = [
        Binding("c", "show_tab('tab-components')", "Components",
                tooltip="Walk the component rows (↑↓); the highlighted row's whole reason shows below the table"),
        Binding("i", "app.file_issue", "Issue",
                tooltip="File the error or mismatch shown as a dated entry in STATUS.md's issue log"),
        Binding("T", "app.next_file", "Track",
                tooltip="Show the workspace's next learner file (the GPT, then each track's)"),
        Binding("l", "app.open_lesson", "Lesson", tooltip="The lesson for the function you are on"),
        Binding("h", "app.hint", "Hint", tooltip="The hint ladder for the method you are on"),
        Binding("e", "app.edit", "Edit", tooltip="Open the file shown in $EDITOR"),
        Binding("s", "show_tab('tab-shapes')", "Shapes", show=False, tooltip="The shapes tab"),
        Binding("p", "show_tab('tab-prints')", "Prints", show=False, tooltip="Your prints, captured"),
        Binding("b", "show_tab('tab-compare')", "Side by side tab", show=False,
                tooltip="Your method beside the reference's, in the tabs"),
        Binding("R", "app.reset_method", "Reset method", show=False,
                tooltip="Put the method you are on back to its TODO (u undoes)"),
        Binding("u", "app.undo_reset", "Undo reset", show=False, tooltip="Put the last reset method back"),
    ]

    _shown_name = ""  # the learner file shown last (its phase is scrolled into view when it changes)

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="companion-body"):
            with Vertical(id="companion-left"):
                with VerticalScroll(id="checklist-scroll"):
                    yield Checklist(id="checklist")
                yield LossPanel(id="loss-panel")
            with Vertical(id="companion-right"):
                yield NextStep(id="next-step")
                with TabbedContent(id="companion-tabs"):
                    with TabPane("Components", id="tab-components"):
                        yield ComponentTable(id="components")
                    with TabPane("Shapes", id="tab-shapes"):
                        yield ShapesTable(id="shapes")
                    with TabPane("Prints", id="tab-prints"):
                        yield PrintsLog(id="prints")
                    with TabPane("Side by side", id="tab-compare"):
                        yield SideBySide(id="side-by-side")
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "shown_report", self._show_report)
        self.watch(self.app, "checklist", self._show_checklist)
        self.watch(self.app, "warmup", self._show_warmup)
        self.watch(self.app, "passed_method", self._show_passed, init=False)
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode = "companion"

    def _show_passed(self, passed) -> None:
        if passed is not None:
            self.query_one(SideBySide).show(*passed)
            self.query_one(TabbedContent).active = "tab-compare"

    def _show_warmup(self, progress) -> None:
        self.query_one(NextStep).warmup = progress

    def _show_report(self, report) -> None:
        shown = self.app.shown
        self.query_one(TopBar).file = shown.name
        next_step = self.query_one(NextStep)
        next_step.learner = shown
        next_step.other_files = len(present(self.app.workspace, self.app.learner_files)) - 1
        next_step.report = report
        checklist = self.query_one(Checklist)
        checklist.others = [r for name, r in self.app.reports.items() if name != shown.name]
        checklist.report = report
        if shown.name != self._shown_name:  # another file: its phase comes into view
            self._shown_name = shown.name
            self.call_after_refresh(self._scroll_to_phase, shown)
        self.query_one(ComponentTable).report = report
        self.query_one(ShapesTable).report = report
        self.query_one(PrintsLog).report = report
        panel = self.query_one(LossPanel)
        panel.run_losses = list(report.result.get("losses") or []) if report else []
        panel.history = self.app.session.loss_history() if self.app.session and shown.is_model else []

    def _show_checklist(self, data) -> None:
        self.query_one(Checklist).data = data

    def _scroll_to_phase(self, shown) -> None:
        names = {e.qualname for e in shown.track_file.exercises} if shown.track_file else {"GPT.__init__"}
        line = self.query_one(Checklist).line_of(names)
        if line is not None:
            self.query_one("#checklist-scroll").scroll_to(y=line, animate=False)

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "tab-components":  # ↑↓ then walk the rows, each one's full reason shown below the table
            self.query_one(ComponentTable).focus_rows()

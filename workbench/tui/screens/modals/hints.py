"""The hint ladder for one method: opening it shows the first rung (shapes), each further h the next (formula,
outline), and the reference's own code only after a confirmation. For a track file the methods are its
exercises and the rungs come from its spec and reference module (workbench/course/hints.py)."""

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Select, Static

from workbench.course.hints import RUNGS, hint
from workbench.course.phases import ALL_METHODS
from workbench.tracks.base import TrackFile
from workbench.tui.screens.modals.confirm import ConfirmScreen

CODE_RUNGS = (2, 3)


class HintScreen(ModalScreen):
    BINDINGS = [
        Binding("h,enter", "next_rung", "Next hint"),
        Binding("escape,q", "close", "Close"),
    ]
    DEFAULT_CSS = """
    HintScreen { align: center middle; }
    HintScreen > Vertical { width: 96%; max-width: 110; height: 90%; border: thick $accent; background: $surface; }
    HintScreen Select { width: 48; margin: 0 1; }
    HintScreen VerticalScroll { height: 1fr; padding: 0 1; }
    HintScreen .rung-title { text-style: bold; color: $accent; margin-top: 1; }
    HintScreen .rung-next { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, qualname: str, levels: dict[str, int], track_file: TrackFile | None = None):
        super().__init__()
        self.track_file = track_file
        self.methods = [e.qualname for e in track_file.exercises] if track_file else list(ALL_METHODS)
        self.qualname = qualname if qualname in self.methods else self.methods[0]
        self.levels = levels  # the app's record of rungs revealed per method (shared, so it is remembered)

    @property
    def key(self) -> str:
        """The method's entry in `levels` (a track file's methods are prefixed with the file's name)."""
        return f"{self.track_file.learner_file}:{self.qualname}" if self.track_file else self.qualname

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Select([(m, m) for m in self.methods], value=self.qualname, allow_blank=False, compact=True,
                         id="hint-method")
            yield VerticalScroll(id="hint-body")
            yield Footer()

    async def on_mount(self) -> None:
        await self._show()

    async def on_select_changed(self, event: Select.Changed) -> None:
        self.qualname = str(event.value)
        await self._show()

    async def _show(self) -> None:
        body = self.query_one("#hint-body", VerticalScroll)
        await body.remove_children()
        level = self.levels[self.key] = max(1, self.levels.get(self.key, 0))  # h shows the first rung
        widgets = []
        for rung in range(level):
            widgets.append(Label(f"{rung + 1}. {RUNGS[rung]}", classes="rung-title"))
            text = hint(self.qualname, rung, self.track_file)
            widgets.append(Static(Syntax(text, "python", theme="ansi_dark", background_color="default")
                                  if rung in CODE_RUNGS else Text(text)))
        if level < len(RUNGS):
            more = "press h for the " + RUNGS[level] + (" (asks first)" if level == len(RUNGS) - 1 else "")
            widgets.append(Label(more, classes="rung-next"))
        else:
            widgets.append(Label("That is the whole ladder. Type it out yourself rather than pasting it: "
                                 "the checks tell you when it matches.", classes="rung-next"))
        await body.mount_all(widgets)
        body.scroll_end(animate=False)

    async def action_next_rung(self) -> None:
        level = self.levels.get(self.key, 0)
        if level >= len(RUNGS):
            return
        if level == len(RUNGS) - 1:
            self.app.push_screen(ConfirmScreen(f"Show the reference's code for {self.qualname}?\n\nYou will learn "
                                               f"more from the outline and the checks; the code stays here once "
                                               f"shown."), self._confirmed)
            return
        self.levels[self.key] = level + 1
        await self._show()

    async def _confirmed(self, yes: bool | None) -> None:
        if yes:
            self.levels[self.key] = len(RUNGS)
            await self._show()

    def action_close(self) -> None:
        self.dismiss()

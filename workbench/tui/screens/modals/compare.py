"""Your method beside the reference's, full screen (key v): in the GPT file the one that passed last, else the
current one; in a track file the function you are on (its reference module on the right)."""

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from workbench.course.methods import REFERENCE_FILE
from workbench.tui.widgets.side_by_side import SideBySide


class CompareScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,v", "close", "Close")]
    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > Vertical { width: 98%; height: 94%; border: thick $success; background: $surface; }
    CompareScreen .compare-hint { width: 1fr; text-align: right; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, qualname: str, learner_source: str, reference: Path = REFERENCE_FILE):
        super().__init__()
        self.qualname, self.learner_source, self.reference = qualname, learner_source, reference

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("esc closes", classes="compare-hint")
            yield SideBySide(self.qualname, self.learner_source, self.reference, id="compare")

    def action_close(self) -> None:
        self.dismiss()

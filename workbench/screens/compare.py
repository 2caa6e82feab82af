"""Your method beside the reference's: opened after a method passes (key v), to see how else it can be written."""

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from workbench.tui_methods import MethodNotFound, method_source, reference_method


class CompareScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,v", "close", "Close")]
    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > Vertical { width: 98%; height: 94%; border: thick $success; background: $surface; }
    CompareScreen Horizontal { height: 1fr; }
    CompareScreen VerticalScroll { width: 1fr; padding: 0 1; }
    CompareScreen .side-title { text-style: bold; width: 1fr; padding: 0 1; }
    """

    def __init__(self, qualname: str, learner_source: str):
        super().__init__()
        self.qualname, self.learner_source = qualname, learner_source

    def compose(self) -> ComposeResult:
        try:
            mine = Syntax(method_source(self.learner_source, self.qualname, dedent=True), "python",
                          theme="ansi_dark", background_color="default", line_numbers=False)
        except (SyntaxError, MethodNotFound) as e:
            mine = Text(f"could not find {self.qualname} in your file ({type(e).__name__})", style="red")
        theirs = Syntax(reference_method(self.qualname), "python", theme="ansi_dark", background_color="default",
                        dedent=True)
        with Vertical():
            with Horizontal(classes="titles", id="compare-titles"):
                yield Label(f"yours: {self.qualname}", classes="side-title")
                yield Label("reference (nanochat/gpt.py)   esc closes", classes="side-title")
            with Horizontal():
                yield VerticalScroll(Static(mine), id="compare-mine")
                yield VerticalScroll(Static(theirs), id="compare-reference")

    def on_mount(self) -> None:
        self.query_one("#compare-titles").styles.height = 1

    def action_close(self) -> None:
        self.dismiss()

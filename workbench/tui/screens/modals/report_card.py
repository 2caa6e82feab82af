"""The report card (`python -m nanochat.report` → $NANOCHAT_BASE_DIR/report/report.md), full screen; esc closes."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown


class ReportCardScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,g", "dismiss", "Close")]
    DEFAULT_CSS = """
    ReportCardScreen { align: center middle; }
    ReportCardScreen > VerticalScroll { width: 96%; height: 94%; border: thick $primary; background: $surface;
                                        padding: 0 1; }
    """

    def __init__(self, markdown: str):
        super().__init__()
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(self.markdown)

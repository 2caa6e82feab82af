"""A method of the learner's file beside the reference's version of it, in two scrolling columns, code beside code
(the docstrings, the skeleton's guide on one side and nanochat's on the other, are left out).

The companion shows it in its "Side by side" tab as soon as a method passes; key v opens it full screen.
"""

import ast
import textwrap

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, Static

from pathlib import Path

from workbench.course.methods import REFERENCE_FILE, MethodNotFound, method_source, reference_method

SYNTAX_THEME = "ansi_dark"  # follows the terminal's own palette


class SideBySide(Vertical):
    DEFAULT_CSS = """
    SideBySide > .side-titles { height: 1; }
    SideBySide .side-title { text-style: bold; width: 1fr; padding: 0 1; }
    SideBySide > Horizontal { height: 1fr; }
    SideBySide VerticalScroll { width: 1fr; padding: 0 1; }
    """

    def __init__(self, qualname: str | None = None, learner_source: str = "", reference: Path = REFERENCE_FILE,
                 **kwargs):
        super().__init__(**kwargs)
        self.qualname, self.learner_source, self.reference = qualname, learner_source, reference

    def compose(self) -> ComposeResult:
        with Horizontal(classes="side-titles"):
            yield Label("", classes="side-title", id="side-mine-title")
            yield Label("", classes="side-title", id="side-reference-title")
        with Horizontal():
            yield VerticalScroll(Static(id="side-mine-code"), id="side-mine")
            yield VerticalScroll(Static(id="side-reference-code"), id="side-reference")

    def on_mount(self) -> None:
        self.show(self.qualname, self.learner_source, self.reference)

    def show(self, qualname: str | None, learner_source: str, reference: Path = REFERENCE_FILE) -> None:
        """Show `qualname` from `learner_source` beside the version in `reference` (a reference module's file;
        nothing yet when qualname is None)."""
        self.qualname, self.learner_source, self.reference = qualname, learner_source, reference
        if not self.query("#side-mine-code"):  # not composed yet: on_mount shows it
            return
        if qualname is None:
            self.query_one("#side-mine-title", Label).update("")
            self.query_one("#side-reference-title", Label).update("")
            self.query_one("#side-mine-code", Static).update(Text(
                "When one of your methods passes, it appears here beside the reference's version.", style="dim"))
            self.query_one("#side-reference-code", Static).update("")
            return
        try:
            mine = Syntax(without_docstring(method_source(learner_source, qualname, dedent=True)), "python",
                          theme=SYNTAX_THEME, background_color="default", word_wrap=True)
        except (SyntaxError, MethodNotFound) as e:
            mine = Text(f"could not find {qualname} in your file ({type(e).__name__})", style="red")
        theirs = Syntax(without_docstring(textwrap.dedent(reference_method(qualname, reference))), "python",
                        theme=SYNTAX_THEME, background_color="default", word_wrap=True)  # long lines at 80 columns
        self.query_one("#side-mine-title", Label).update(f"yours: {qualname}")
        self.query_one("#side-reference-title", Label).update(f"reference (nanochat/{reference.name})")
        self.query_one("#side-mine-code", Static).update(mine)
        self.query_one("#side-reference-code", Static).update(theirs)
        for scroll in self.query(VerticalScroll):
            scroll.scroll_home(animate=False)


def without_docstring(source: str) -> str:
    """A function's source without its docstring (the def line and the code stay, line for line)."""
    try:
        func = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return source
    body = getattr(func, "body", None)
    if not body or not (isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                        and isinstance(body[0].value.value, str)) or len(body) == 1:
        return source
    lines = source.splitlines()
    return "\n".join(lines[:body[0].lineno - 1] + lines[body[0].end_lineno:])

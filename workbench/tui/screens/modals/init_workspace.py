"""The dialog shown when the TUI opens on a directory with no workspace: create one here, or quit."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class InitWorkspaceScreen(ModalScreen[bool]):
    """Dismisses with True to create the workspace, False to quit."""

    BINDINGS = [Binding("y", "create", "Create"), Binding("n,escape", "cancel", "Quit")]
    DEFAULT_CSS = """
    InitWorkspaceScreen { align: center middle; }
    InitWorkspaceScreen > Vertical {
        width: 72; height: auto; padding: 1 2; border: thick $primary; background: $surface;
    }
    InitWorkspaceScreen Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    InitWorkspaceScreen Button { margin-left: 2; }
    """

    def __init__(self, directory: str, learner_name: str):
        super().__init__()
        self.directory, self.learner_name = directory, learner_name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]No workspace here yet[/b]")
            yield Static(
                f"{self.directory} has no {self.learner_name} and STATUS.md.\n\n"
                f"Create them? {self.learner_name} is the GPT you will write, method by method (every body a "
                f"TODO); STATUS.md tracks your progress. Nothing existing is overwritten."
            )
            with Horizontal():
                yield Button("Quit", id="cancel")
                yield Button("Create workspace (y)", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#create", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "create")

    def action_create(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)

"""Where each attention head of your model looks (key a), redrawn after every save that is checked.

The model is your file's, fresh (random weights, as in the check), run in a process of its own by the same job
as `nanochat-workbench attention` (workbench/instruments/attention.py); up/down pick the layer, left/right the
head. Until your attention runs, it says which method is still a TODO.
"""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from workbench.instruments.attention import DEFAULT_PROMPT

TIMEOUT_S = 60.0


class AttentionScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,a", "close", "Close"),  # the arrows over the scroll's own (page up/down scroll)
                Binding("up", "move(-1, 0)", "Layer up", priority=True),
                Binding("down", "move(1, 0)", "Layer down", priority=True),
                Binding("left", "move(0, -1)", "Head left", priority=True),
                Binding("right", "move(0, 1)", "Head right", priority=True)]
    DEFAULT_CSS = """
    AttentionScreen { align: center middle; }
    AttentionScreen > Vertical { width: 98%; height: 94%; border: thick $accent; background: $surface; }
    AttentionScreen .attention-hint { width: 1fr; text-align: right; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, learner_path, prompt: str = DEFAULT_PROMPT):
        super().__init__()
        self.learner_path, self.prompt = learner_path, prompt
        self.map_layer, self.map_head = 0, 0
        self.shape: tuple[int, int] | None = None  # (layers, heads) of the model last shown
        self.body = None  # what the view shows now (a rich renderable)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("↑↓ layer · ←→ head · page up/down scroll · esc closes · redrawn after each save", classes="attention-hint")
            with VerticalScroll():
                yield Static("running your model on the prompt…", id="attention")

    def on_mount(self) -> None:
        self.watch(self.app, "report", lambda report: self.refresh_map())  # called now, and after every check

    def refresh_map(self) -> None:
        request = {"file": str(self.learner_path), "prompt": self.prompt, "layer": self.map_layer,
                   "head": self.map_head, "depth": 4, "seed": 0}
        self.run_worker(lambda: self._run(request), thread=True, exclusive=True, group="attention")

    def _run(self, request: dict) -> None:
        from workbench.instruments.isolate import run_job
        outcome = run_job("workbench.instruments.attention", request, timeout=TIMEOUT_S)
        self.app.call_from_thread(self._show, outcome)

    def _show(self, outcome) -> None:
        from rich.console import Group
        from rich.text import Text

        from workbench.instruments.attention import renderables
        from workbench.instruments.isolate import JobKind
        if outcome.kind == JobKind.OK:
            self.shape = (outcome.data["n_layer"], outcome.data["n_head"])
            body = Group(*renderables(outcome.data, values=False))
        elif outcome.kind == JobKind.TODO:
            body = Text(f"not yet: {outcome.todo['qualname']} is still a TODO — the map appears once your "
                        f"model's attention runs", style="yellow")
        else:
            body = Text(f"{outcome.error.get('type')}: {outcome.error.get('message')}", style="red")
        self.body = body
        self.query_one("#attention", Static).update(body)

    def action_move(self, d_layer: int, d_head: int) -> None:
        if self.shape is None:
            return
        self.map_layer = (self.map_layer + d_layer) % self.shape[0]
        self.map_head = (self.map_head + d_head) % self.shape[1]
        self.refresh_map()

    def action_close(self) -> None:
        self.dismiss()

"""Two sparklines: the loss of each step in the latest check, and the final loss of every save so far."""

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Label, Sparkline


class LossPanel(Vertical):
    run_losses: reactive[list[float]] = reactive(list, always_update=True)
    history: reactive[list[float]] = reactive(list, always_update=True)

    def compose(self) -> ComposeResult:
        yield Label("loss this save: –", id="loss-run-label")
        yield Sparkline([], id="loss-run")
        yield Label("final loss across saves: –", id="loss-history-label")
        yield Sparkline([], id="loss-history")

    def watch_run_losses(self, losses: list[float]) -> None:
        if not self.is_mounted:
            return
        self.query_one("#loss-run", Sparkline).data = losses
        label = f"loss this save: {losses[0]:.3f} → {losses[-1]:.3f} ({len(losses)} steps)" if losses else \
            "loss this save: – (no training step yet)"
        self.query_one("#loss-run-label", Label).update(label)

    def watch_history(self, history: list[float]) -> None:
        if not self.is_mounted:
            return
        self.query_one("#loss-history", Sparkline).data = history
        label = f"final loss across saves: {history[-1]:.3f} (best {min(history):.3f}, {len(history)} saves)" \
            if history else "final loss across saves: –"
        self.query_one("#loss-history-label", Label).update(label)

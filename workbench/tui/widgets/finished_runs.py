"""The table of training runs on disk (see workbench/tui/services/runs.py for how they are found)."""

from pathlib import Path

from textual.widgets import DataTable

from workbench.tui.services.runs import RunInfo


class FinishedRuns(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        for label in ("tag", "steps saved", "model", "loss", "val bpb"):
            self.add_column(label)

    def show(self, runs: list[RunInfo]) -> None:
        self.clear()
        for run in runs:
            model = "reference" if run.model_source == "reference" else Path(run.model_source).name
            self.add_row(run.tag, ", ".join(map(str, run.steps[-3:])) or "none", model,
                         f"{run.last_loss:.3f}" if run.last_loss is not None else "–",
                         f"{run.val_bpb:.3f}" if run.val_bpb is not None else "–", key=run.tag)

"""The table of checkpoint folders on disk, every phase (see workbench/tui/services/runs.py for how they are found);
a row's key is "phase:tag"."""

from pathlib import Path

from textual.widgets import DataTable

from workbench.tui.services.runs import CHAT_FIRST, RunInfo


class FinishedRuns(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        for label in ("tag", "phase", "steps saved", "model", "loss", "val bpb"):
            self.add_column(label)

    def show(self, runs: dict[str, list[RunInfo]]) -> None:
        """`runs`: the runs of each phase (base, mid, sft, rl), newest first within a phase."""
        self.clear()
        for phase in reversed(CHAT_FIRST):  # base first: the runs this screen starts
            for run in runs.get(phase, []):
                model = "reference" if run.model_source == "reference" else Path(run.model_source).name
                self.add_row(run.tag, phase, ", ".join(map(str, run.steps[-3:])) or "none", model,
                             f"{run.last_loss:.3f}" if run.last_loss is not None else "–",
                             f"{run.val_bpb:.3f}" if run.val_bpb is not None else "–", key=f"{phase}:{run.tag}")

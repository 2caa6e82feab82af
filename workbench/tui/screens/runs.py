"""The runs screen: start a tiny base_train run (reference or learner model), watch it, cancel it, and see the
runs already on disk with their checkpoints.

It only displays: the run belongs to the app's RunService (workbench/tui/services/training.py), whose state
arrives as `app.train_run`; the list of runs is re-read whenever a run ends (`app.checkpoints_version`).
"""

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Input, Label, Log, Select

from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.services.runs import base_dir, scan_runs
from workbench.tui.services.training import Run, RunBusy
from workbench.tui.widgets.finished_runs import FinishedRuns
from workbench.tui.widgets.loss_plot import Curve, LossPlot
from workbench.tui.widgets.run_metrics import RunMetrics
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar

DEFAULT_STEPS = 20


class RunsScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("s", "start_run", "Start run"),
        Binding("x", "cancel_run", "Cancel run"),
        Binding("f", "refresh_runs", "Refresh list"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown_run: str | None = None  # the run id the log shows
        self._logged = 0  # its log lines written into the Log widget

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="runs-controls"):
            yield Label("model", classes="wide-only")
            yield Select([("reference", "reference"), ("my GPT", "learner")], value="reference",
                         allow_blank=False, id="run-model", compact=True)
            yield Label("steps")
            yield Input(str(DEFAULT_STEPS), id="run-steps", type="integer", compact=True)
            yield Label("target", classes="wide-only")
            yield Select([("local", "local")], value="local", allow_blank=False, id="run-target", compact=True)
            yield Button("Start (s)", id="run-start", variant="primary", compact=True)
            yield Button("Cancel (x)", id="run-cancel", disabled=True, compact=True)
        with Horizontal(id="runs-body"):
            with Vertical(id="runs-live"):
                yield RunMetrics(id="run-metrics")
                yield LossPlot(title="training loss", empty="start a run", id="run-plot")
                yield Log(max_lines=400, id="run-log")
            yield FinishedRuns(id="runs-finished")
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode, self.query_one(TopBar).file = "runs", self.app.learner_path.name
        self.query_one("#run-target", Select).tooltip = "local runs only for now (SSH and SLURM targets later)"
        gpus = self.app.runs.gpus
        device = f"{gpus} GPU{'s' if gpus > 1 else ''}" + (" (torchrun)" if gpus > 1 else "") if gpus else "CPU"
        self.query_one(RunMetrics).state = f"no run yet · {device}"
        self.watch(self.app, "train_run", self._show_run)
        self.watch(self.app, "checkpoints_version", lambda _: self.action_refresh_runs())

    def action_refresh_runs(self) -> None:
        self.query_one(FinishedRuns).show(scan_runs(base_dir()))

    # ---- what the run service reports -------------------------------------------------------------------------

    def _show_run(self, run: Run | None) -> None:
        if run is None:
            return
        metrics = self.query_one(RunMetrics)
        metrics.state, metrics.total_steps = run.state, run.total_steps
        metrics.metrics = {k: v for k, v in run.metrics.items() if not (run.finished and k == "eta_s")}
        self.query_one("#run-plot", LossPlot).curves = [Curve(run.tag, list(run.steps), list(run.losses))]
        log = self.query_one("#run-log", Log)
        if run.run_id != self._shown_run:
            self._shown_run, self._logged = run.run_id, 0
            log.clear()
        new = run.lines_seen - self._logged
        if new > 0:
            log.write_lines(list(run.log)[-min(new, len(run.log)):])
            self._logged = run.lines_seen
        self.query_one("#run-cancel", Button).disabled = run.finished
        self.query_one("#run-start", Button).disabled = not run.finished

    # ---- starting and cancelling ------------------------------------------------------------------------------

    @on(Button.Pressed, "#run-start")
    def action_start_run(self) -> None:
        steps_text = self.query_one("#run-steps", Input).value.strip()
        if not steps_text.isdigit() or not 1 <= int(steps_text) <= 1_000_000:
            self.notify("Steps must be a whole number from 1 up.", severity="error")
            return
        if self.query_one("#run-model", Select).value == "learner":
            if not self.app.learner_path.exists():
                self.notify(f"{self.app.learner_path} does not exist yet.", severity="error")
                return
            model, stem = str(self.app.learner_path), "d4-learner"
        else:
            model, stem = "reference", "d4"
        try:
            self.app.runs.start(model, int(steps_text), stem)
        except RunBusy as e:
            self.notify(str(e), severity="warning")

    @on(Button.Pressed, "#run-cancel")
    def action_cancel_run(self) -> None:
        if self.app.runs.cancel():
            self.app.train_run = self.app.runs.current

"""The runs screen: start a tiny base_train run (reference or learner model) here or on a remote target, watch it,
cancel it; see the checkpoints on disk (every phase), evaluate one and read its results, and the report card.

It only displays: the local run belongs to the app's RunService (services/training.py, state in `app.train_run`),
a remote one to RemoteRunService (services/remote_runs.py, `app.remote_progress`), evals and the report card to
JobService (services/jobs.py, `app.job`); the list is re-read whenever a run ends (`app.checkpoints_version`).
"""

from pathlib import Path

from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Input, Label, Log, Select, Static

from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.services.jobs import Job, JobKind, eval_command, eval_results, report_command, report_path, \
    result_rows
from workbench.tui.services.remote_runs import target_names
from workbench.tui.services.runs import CHAT_FIRST, Checkpoint, base_dir, scan_runs
from workbench.tui.services.training import Run, RunBusy
from workbench.tui.widgets.finished_runs import FinishedRuns
from workbench.tui.widgets.loss_plot import Curve, LossPlot
from workbench.tui.widgets.run_metrics import RunMetrics
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar

DEFAULT_STEPS = 20


class RunsScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("s", "start_run", "Start", tooltip="Start a run on the target picked (local, or one of targets.toml)"),
        Binding("x", "cancel_run", "Cancel",
                tooltip="Cancel the run: once, stop after the step and save; twice, kill it"),
        Binding("f", "refresh_runs", "Refresh", tooltip="Re-read the finished runs and checkpoints"),
        Binding("E", "evaluate", "Evaluate",
                tooltip="Evaluate the highlighted checkpoint (base_eval or chat_eval); results below the list"),
        Binding("g", "report_card", "Report card", tooltip="Write the report card (report.md) and open it"),
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
            with Vertical(id="runs-side"):
                yield FinishedRuns(id="runs-finished")
                yield Static("", id="run-results")
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode, self.query_one(TopBar).file = "runs", self.app.learner_path.name
        names, problem = target_names()
        target = self.query_one("#run-target", Select)
        target.set_options([("local", "local")] + [(name, name) for name in names])
        target.value = "local"
        target.tooltip = problem or "where the run goes: this machine, or a target of targets.toml"
        gpus = self.app.runs.gpus
        device = f"{gpus} GPU{'s' if gpus > 1 else ''}" + (" (torchrun)" if gpus > 1 else "") if gpus else "CPU"
        self.query_one(RunMetrics).state = f"no run yet · {device}"
        self.watch(self.app, "train_run", self._show_run)
        self.watch(self.app, "checkpoints_version", lambda _: self.action_refresh_runs())
        self.watch(self.app, "job", self._show_job)
        self.watch(self.app, "remote_progress", self._show_remote)

    def action_refresh_runs(self) -> None:
        self.query_one(FinishedRuns).show({phase: scan_runs(base_dir(), phase) for phase in CHAT_FIRST})
        self._show_results()

    def highlighted_checkpoint(self) -> Checkpoint | None:
        """The last saved step of the run highlighted in the list."""
        table = self.query_one(FinishedRuns)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        phase, tag = key.split(":", 1)
        run = next((r for r in scan_runs(base_dir(), phase) if r.tag == tag), None)
        return Checkpoint(phase, tag, run.steps[-1], run.model_source) if run and run.steps else None

    @on(DataTable.RowHighlighted, "#runs-finished")
    def _show_results(self) -> None:
        """The eval results saved beside the highlighted checkpoint, as a table."""
        checkpoint = self.highlighted_checkpoint()
        results = eval_results(checkpoint) if checkpoint else None
        pane = self.query_one("#run-results", Static)
        if results is None:
            pane.update(f"{checkpoint.phase} {checkpoint.tag} step {checkpoint.step}: not evaluated yet (E)"
                        if checkpoint else "")
            return
        table = Table(title=f"{checkpoint.phase} {checkpoint.tag} step {checkpoint.step}", expand=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for metric, value in result_rows(results):
            table.add_row(metric, value)
        pane.update(table)

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

    # ---- evaluations and the report card (services/jobs.py) ---------------------------------------------------

    def action_evaluate(self) -> None:
        checkpoint = self.highlighted_checkpoint()
        if checkpoint is None:
            self.notify("Pick a run with a saved checkpoint in the list first (↑↓).", severity="warning")
            return
        if self.app.jobs.running(JobKind.EVAL):
            self.notify("An evaluation is already running.", severity="warning")
            return
        self.app.jobs.start(JobKind.EVAL, eval_command(checkpoint), checkpoint)
        self.notify(f"Evaluating {checkpoint.phase} {checkpoint.tag} step {checkpoint.step}…", title="Eval")

    def action_report_card(self) -> None:
        if not self.app.jobs.running(JobKind.REPORT):
            self.app.jobs.start(JobKind.REPORT, report_command())

    def _show_job(self, job: Job | None) -> None:
        if job is None:
            return
        if job.lines:
            self.query_one("#run-log", Log).write_line(f"[{job.kind.value}] {job.lines[-1]}")
        if not job.finished:
            return
        if job.kind == JobKind.EVAL:
            self._show_results()
            if job.returncode != 0:
                self.notify(f"The evaluation failed: {job.lines[-1] if job.lines else job.returncode}",
                            title="Eval", severity="error", timeout=15)
        elif job.returncode == 0 and report_path().is_file():
            from workbench.tui.screens.modals.report_card import ReportCardScreen
            self.app.push_screen(ReportCardScreen(report_path().read_text(encoding="utf-8", errors="replace")))
        else:
            self.notify(f"No report card: {job.lines[-1] if job.lines else job.returncode}", severity="error")

    def _show_remote(self, progress) -> None:
        if progress is None:
            return
        if progress.line:
            self.query_one("#run-log", Log).write_line(progress.line)
        if progress.state:
            self.query_one(RunMetrics).state = f"remote: {progress.state}"

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
        target = self.query_one("#run-target", Select).value
        if target != "local":
            self.app.remote_runs.start(str(target), Path(model) if model != "reference" else None, int(steps_text))
            self.query_one("#run-log", Log).clear()
            self.query_one(RunMetrics).state = f"launching on {target}…"
            return
        try:
            self.app.runs.start(model, int(steps_text), stem)
        except RunBusy as e:
            self.notify(str(e), severity="warning")

    @on(Button.Pressed, "#run-cancel")
    def action_cancel_run(self) -> None:
        if self.app.runs.cancel():
            self.app.train_run = self.app.runs.current

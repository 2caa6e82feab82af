"""The runs screen: start a tiny local base_train run (reference or learner model), watch it, cancel it, and see
the runs already on disk with their checkpoints.

The run is a child process (`python -m nanochat.scripts.base_train ...`, or torchrun with one process per GPU);
its printed log is tailed from its stdout and its metrics from `<checkpoint dir>/metrics.jsonl`. Local runs are
the only target for now; remote ones (SSH, SLURM) would be further entries in the target selector.
"""

import asyncio
import os
import signal
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Input, Label, Log, Select

from workbench.tui.messages import RunExited, RunOutput
from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.services.runs import MetricsTail, base_dir, count_gpus, scan_runs, train_command
from workbench.tui.widgets.finished_runs import FinishedRuns
from workbench.tui.widgets.loss_plot import Curve, LossPlot
from workbench.tui.widgets.run_metrics import RunMetrics
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar

DEFAULT_STEPS = 20
TAIL_INTERVAL_S = 0.25


class RunsScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("s", "start_run", "Start run"),
        Binding("x", "cancel_run", "Cancel run"),
        Binding("f", "refresh_runs", "Refresh list", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.process: asyncio.subprocess.Process | None = None
        self.run_id: str | None = None
        self.run_tag = ""
        self.gpus = 0
        self._steps: list[float] = []
        self._losses: list[float] = []
        self._seen_steps: set = set()
        self._interrupts = 0

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="runs-controls"):
            yield Label("model")
            yield Select([("reference", "reference"), ("my GPT", "learner")], value="reference",
                         allow_blank=False, id="run-model", compact=True)
            yield Label("steps")
            yield Input(str(DEFAULT_STEPS), id="run-steps", type="integer", compact=True)
            yield Label("target", classes="wide-only")
            yield Select([("local", "local")], value="local", allow_blank=False, id="run-target", compact=True,
                         classes="wide-only")
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
        self.detect_gpus()
        self.action_refresh_runs()

    # ---- devices and the list of runs -------------------------------------------------------------------------

    def detect_gpus(self) -> None:
        self.gpus = count_gpus()
        device = f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}" + (" (torchrun)" if self.gpus > 1 else "") \
            if self.gpus else "CPU"
        self.query_one(RunMetrics).state = f"no run yet · {device}"

    def action_refresh_runs(self) -> None:
        self.query_one(FinishedRuns).show(scan_runs(base_dir()))

    # ---- starting, tailing, cancelling ------------------------------------------------------------------------

    @on(Button.Pressed, "#run-start")
    def action_start_run(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.notify("A run is already going: cancel it first (x).", severity="warning")
            return
        steps_text = self.query_one("#run-steps", Input).value.strip()
        if not steps_text.isdigit() or not 1 <= int(steps_text) <= 1_000_000:
            self.notify("Steps must be a whole number from 1 up.", severity="error")
            return
        choice = self.query_one("#run-model", Select).value
        if choice == "learner":
            model, tag = str(self.app.learner_path), "d4-learner"
            if not self.app.learner_path.exists():
                self.notify(f"{self.app.learner_path} does not exist yet.", severity="error")
                return
        else:
            model, tag = "reference", "d4"
        self.start_run(model, int(steps_text), tag)

    def start_run(self, model: str, steps: int, tag: str) -> None:
        self.run_id, self.run_tag = f"{tag}-{time.time():.0f}", tag
        self._steps, self._losses, self._seen_steps, self._interrupts = [], [], set(), 0
        metrics = self.query_one(RunMetrics)
        metrics.record, metrics.total_steps, metrics.val_bpb = {}, steps, None
        metrics.state = f"starting {tag}…"
        self.query_one("#run-plot", LossPlot).curves = []
        log = self.query_one("#run-log", Log)
        log.clear()
        command = train_command(model, steps, tag, self.gpus)
        log.write_line("$ " + " ".join(command[1:] if command[0].endswith("python") else command))
        self.query_one("#run-cancel", Button).disabled = False
        self.query_one("#run-start", Button).disabled = True
        self.run_training(command, base_dir() / "base_checkpoints" / tag / "metrics.jsonl", self.run_id)

    @work(exclusive=True, group="train-run", exit_on_error=False)
    async def run_training(self, command: list[str], metrics_path, run_id: str) -> None:
        started = time.time()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
            start_new_session=True)  # its own process group: a cancel reaches torchrun's children too
        tail_task = asyncio.create_task(self._tail_metrics(MetricsTail(metrics_path, started), run_id))
        try:
            async for raw in process.stdout:
                self.post_message(RunOutput(run_id, line=raw.decode("utf-8", "replace").rstrip("\n")))
            returncode = await process.wait()
        except asyncio.CancelledError:
            _signal_group(process, signal.SIGKILL)
            raise
        finally:
            tail_task.cancel()
        for record in MetricsTail(metrics_path, started).read_new():
            self.post_message(RunOutput(run_id, record=record))  # lines written after the last poll (deduped)
        self.post_message(RunExited(run_id, returncode))

    async def _tail_metrics(self, tail: MetricsTail, run_id: str) -> None:
        while True:
            for record in tail.read_new():
                self.post_message(RunOutput(run_id, record=record))
            await asyncio.sleep(TAIL_INTERVAL_S)

    def on_run_output(self, message: RunOutput) -> None:
        if message.run_id != self.run_id:
            return
        metrics = self.query_one(RunMetrics)
        if message.record is None:
            self.query_one("#run-log", Log).write_line(message.line)
            return
        record = message.record
        if record.get("val_bpb") is not None:
            metrics.val_bpb = record["val_bpb"]
        if record.get("loss") is not None:
            if record.get("step") in self._seen_steps:
                return
            self._seen_steps.add(record.get("step"))
            self._steps.append(record["step"])
            self._losses.append(record["loss"])
            metrics.record = record
            metrics.state = "training"
            self.query_one("#run-plot", LossPlot).curves = [Curve(self.run_tag, self._steps, self._losses)]

    def on_run_exited(self, message: RunExited) -> None:
        if message.run_id != self.run_id:
            return
        metrics = self.query_one(RunMetrics)
        rc = message.returncode
        if self._interrupts:
            step = f" after step {self._steps[-1] + 1}" if self._steps else ""
            metrics.state = f"stopped{step}, checkpoint saved" if rc == 0 else "cancelled"
        else:
            metrics.state = "finished" if rc == 0 else f"failed (exit {rc})"
        if rc != 0 and not self._interrupts:
            self.notify("The training run failed: its last lines are in the log below.", severity="error")
        self.query_one("#run-cancel", Button).disabled = True
        self.query_one("#run-start", Button).disabled = False
        self.action_refresh_runs()

    @on(Button.Pressed, "#run-cancel")
    def action_cancel_run(self) -> None:
        """First cancel: Ctrl-C (base_train saves a checkpoint at the end of the step). Second: kill."""
        if self.process is None or self.process.returncode is not None:
            return
        self._interrupts += 1
        if self._interrupts == 1:
            _signal_group(self.process, signal.SIGINT)
            self.query_one(RunMetrics).state = "stopping after this step (x again to kill)…"
        else:
            _signal_group(self.process, signal.SIGKILL)


def _signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

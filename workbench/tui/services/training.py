"""The training run the TUI owns: one local base_train at a time, started from the Runs screen or Chat's ctrl+t.

`RunService` starts the process in a worker of the app's (group "train-run": exclusive, so quitting or a newer
run cancels it), reports every line of its log and every metrics.jsonl record to the app as messages
(RunOutput, RunExited), and keeps the run's state in a `Run` that the app publishes (`app.train_run`) for
screens to draw. Screens never hold the process. Each run gets a model tag of its own (d4, d4-2, ...), so a
cancelled run never writes into the checkpoint folder of an earlier one.
"""

import asyncio
import re
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from workbench.tui.messages import RunExited, RunOutput
from workbench.tui.services.process import signal_group, stream_lines
from workbench.tui.services.runs import MetricsTail, base_dir, count_gpus, train_command

LOG_LINES = 400
TAIL_INTERVAL_S = 0.25


class RunBusy(Exception):
    """A run is already going (one at a time)."""


@dataclass
class Run:
    run_id: str
    tag: str
    model: str  # "reference" or the learner file's path
    total_steps: int
    command: list[str]
    state: str = "starting"
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # the latest value of every metric the run has logged
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    lines_seen: int = 0  # log lines ever received (the deque keeps the last LOG_LINES)
    returncode: int | None = None
    interrupts: int = 0

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    def take(self, message: RunOutput) -> None:
        if message.record is None:
            self.log.append(message.line)
            self.lines_seen += 1
            return
        record = message.record
        trained = record.get("loss") is not None  # an evaluation's record carries a step too: not a new one
        self.metrics.update({k: v for k, v in record.items() if v is not None and (trained or k != "step")})
        if record.get("loss") is not None and record.get("step") not in self.steps:
            self.steps.append(record["step"])
            self.losses.append(record["loss"])
            if not self.interrupts:
                self.state = "training"

    def end(self, returncode: int | None) -> None:
        self.returncode = returncode
        if self.interrupts:
            step = f" after step {self.steps[-1] + 1}" if self.steps else ""
            self.state = f"stopped{step}, checkpoint saved" if returncode == 0 else "cancelled"
        else:
            self.state = "finished" if returncode == 0 else f"failed (exit {returncode})"


def fresh_tag(root: Path, stem: str) -> str:
    """`stem`, or stem-2, stem-3, ...: the first model tag with no checkpoint folder under `root` yet."""
    taken = {p.name for p in root.iterdir()} if root.is_dir() else set()
    if stem not in taken:
        return stem
    numbers = [int(m.group(1)) for name in taken if (m := re.fullmatch(re.escape(stem) + r"-(\d+)", name))]
    return f"{stem}-{max(numbers, default=1) + 1}"


class RunService:
    """Owns the training process; the app routes its messages back through `take`/`end`."""

    def __init__(self, app):
        self.app = app
        self.current: Run | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.gpus = count_gpus()
        self.command_for = train_command  # (model, steps, tag, gpus) -> argv; tests put a stand-in here

    @property
    def running(self) -> bool:
        return self.current is not None and not self.current.finished

    def start(self, model: str, steps: int, stem: str) -> Run:
        if self.running:
            raise RunBusy("A run is already going: cancel it first (x).")
        root = base_dir() / "base_checkpoints"
        tag = fresh_tag(root, stem)
        command = self.command_for(model, steps, tag, self.gpus)
        run = Run(f"{tag}-{time.time():.0f}", tag, model, steps, command, state=f"starting {tag}…")
        run.log.append("$ " + " ".join(command[1:] if command[0].endswith("python") else command))
        self.current = self.app.train_run = run  # published at once: screens show the starting run
        self.app.run_worker(self._train(run, root / tag / "metrics.jsonl"), name=f"training {tag}",
                            group="train-run", exclusive=True, exit_on_error=False)
        return run

    async def _train(self, run: Run, metrics_path: Path) -> None:
        started, post = time.time(), self.app.post_message
        tail = asyncio.create_task(self._tail(MetricsTail(metrics_path, started), run.run_id))

        def keep(process):
            self.process = process

        try:
            returncode = await stream_lines(run.command, lambda line: post(RunOutput(run.run_id, line=line)),
                                            started=keep)
        finally:
            tail.cancel()
        for record in MetricsTail(metrics_path, started).read_new():  # written after the last poll (deduped)
            post(RunOutput(run.run_id, record=record))
        post(RunExited(run.run_id, returncode))

    async def _tail(self, tail: MetricsTail, run_id: str) -> None:
        while True:
            for record in tail.read_new():
                self.app.post_message(RunOutput(run_id, record=record))
            await asyncio.sleep(TAIL_INTERVAL_S)

    def take(self, message: RunOutput | RunExited) -> Run | None:
        """Apply a message of the current run to its state; None for a message of an older run."""
        run = self.current
        if run is None or message.run_id != run.run_id:
            return None
        if isinstance(message, RunExited):
            run.end(message.returncode)
            self.process = None
        else:
            run.take(message)
        return run

    def cancel(self) -> bool:
        """First cancel: Ctrl-C (base_train saves a checkpoint at the end of the step). Second: kill."""
        if not self.running or self.process is None:
            return False
        run = self.current
        run.interrupts += 1
        if run.interrupts == 1:
            signal_group(self.process, signal.SIGINT)
            run.state = "stopping after this step (x again to kill)…"
        else:
            signal_group(self.process, signal.SIGKILL)
        return True

    async def stop(self) -> None:
        """Kill the run (on quit) and reap it."""
        process = self.process
        if signal_group(process, signal.SIGKILL):
            await process.wait()

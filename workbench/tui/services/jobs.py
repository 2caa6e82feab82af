"""Short jobs the TUI runs on finished checkpoints: an evaluation (`nanochat.scripts.base_eval` for base
checkpoints, `chat_eval` for mid/sft/rl) and the report card (`python -m nanochat.report` → report.md).

`JobService` runs one job of each kind at a time, in an exclusive app worker per kind, and posts every output
line and the exit to the app (JobOutput, JobExited); the result files are read back from disk: the eval JSON the
scripts write beside the checkpoint (`core_eval_<step>.json` / `chat_eval_<step>.json`), and report.md in
$NANOCHAT_BASE_DIR/report/. Nothing here imports torch.
"""

import enum
import json
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from workbench.tui.messages import JobExited, JobOutput
from workbench.tui.services.process import stream_lines
from workbench.tui.services.runs import Checkpoint, base_dir

EVAL_MAX_PROBLEMS = 20  # per task: a first reading in minutes on a laptop, not the full benchmark
LOG_LINES = 200


class JobKind(str, enum.Enum):
    EVAL = "eval"
    REPORT = "report"


@dataclass
class Job:
    kind: JobKind
    command: list[str]
    checkpoint: Checkpoint | None = None
    lines: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    returncode: int | None = None

    @property
    def finished(self) -> bool:
        return self.returncode is not None


def eval_command(checkpoint: Checkpoint, max_problems: int = EVAL_MAX_PROBLEMS) -> list[str]:
    """base_eval (CORE + bpb) for a base checkpoint, chat_eval on every task with data for the others."""
    where = ["-i", checkpoint.phase, "-g", checkpoint.tag, "-s", str(checkpoint.step)]
    if checkpoint.phase == "base":
        return [sys.executable, "-m", "nanochat.scripts.base_eval", *where, f"--max-per-task={max_problems}"]
    return [sys.executable, "-m", "nanochat.scripts.chat_eval", *where, "-a", "all", "-n", str(max_problems)]


def report_command() -> list[str]:
    return [sys.executable, "-m", "nanochat.report"]


def report_path() -> Path:
    return base_dir() / "report" / "report.md"


def eval_results(checkpoint: Checkpoint) -> dict | None:
    """The eval JSON saved beside a checkpoint (base_eval's core_eval, else chat_eval's), or None."""
    folder = base_dir() / f"{checkpoint.phase}_checkpoints" / checkpoint.tag
    for kind in ("core_eval", "chat_eval"):
        path = folder / f"{kind}_{checkpoint.step:06d}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def result_rows(results: dict) -> list[tuple[str, str]]:
    """(metric, value) rows of an eval JSON: the headline (CORE / ChatCORE), each task, bpb, skipped tasks."""
    rows = [(name, f"{results[name]:.4f}") for name in ("CORE", "ChatCORE") if results.get(name) is not None]
    counts = results.get("counts") or {}
    for task, accuracy in (results.get("results") or {}).items():
        passed = counts.get(task)
        rows.append((task, f"{accuracy:.3f}" + (f"  ({passed[0]}/{passed[1]})" if passed else "")))
    for split, bpb in (results.get("bpb") or {}).items():
        rows.append((f"{split} bpb", f"{bpb:.4f}"))
    for task, reason in (results.get("skipped") or {}).items():
        rows.append((task, f"skipped: {reason}"))
    return rows


class JobService:
    def __init__(self, app):
        self.app = app
        self.jobs: dict[JobKind, Job] = {}

    def running(self, kind: JobKind) -> bool:
        job = self.jobs.get(kind)
        return job is not None and not job.finished

    def start(self, kind: JobKind, command: list[str], checkpoint: Checkpoint | None = None) -> Job:
        job = self.jobs[kind] = Job(kind, command, checkpoint)
        self.app.run_worker(self._run(job), name=f"{kind.value} job", group=f"job-{kind.value}", exclusive=True,
                            exit_on_error=False)
        return job

    async def _run(self, job: Job) -> None:
        post = self.app.post_message
        returncode = await stream_lines(job.command, lambda line: post(JobOutput(job.kind, line)))
        post(JobExited(job.kind, returncode))

    def take(self, message: JobOutput | JobExited) -> Job | None:
        job = self.jobs.get(message.kind)
        if job is None:
            return None
        if isinstance(message, JobExited):
            job.returncode = message.returncode
        else:
            job.lines.append(message.line)
        return job

"""Local records of remote runs, one JSON file per run in $XDG_STATE_HOME/nanochat-workbench/runs/, so the CLI
and the TUI find their runs again after a restart. `RunRecord` is the one schema; `nanochat-workbench runs
--json` prints these dicts.
"""

import dataclasses
import enum
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.remote.files import atomic_write_text, state_dir


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunState.DONE, RunState.FAILED, RunState.CANCELLED)


@dataclass
class RunRecord:
    id: str
    target: str
    kind: str                      # the target's kind when launched: ssh, slurm, local
    stages: list[str]              # the pipeline stages the job runs, in order
    preset: str
    remote_dir: str                # runs/<id> on the target (absolute)
    workdir: str                   # the target's workdir (absolute)
    started: float                 # time.time() at submission
    state: RunState = RunState.QUEUED
    stage: str | None = None       # the stage running now (or the last one that ran)
    job_id: str | None = None      # SLURM
    queue_reason: str | None = None  # SLURM, while queued: squeue's reason (Resources, Priority, ...)
    pid: int | None = None         # ssh/local: the detached job's process group
    model: str = "reference"       # or the learner file's name
    ended: float | None = None
    exit_code: int | None = None
    message: str | None = None     # why it failed, with the log's last lines
    pulled: list[str] = field(default_factory=list)  # local folders the results were copied into

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = RunState(values.get("state", "queued"))
        return cls(**values)


ID_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def records_dir() -> Path:
    return state_dir() / "runs"


def save_record(record: RunRecord) -> Path:
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.id}.json"
    atomic_write_text(path, json.dumps(record.to_dict(), indent=1) + "\n")
    return path


def load_record(run_id: str) -> RunRecord:
    """The record of `run_id`; a unique prefix is enough. KeyError with a one-line message when none matches."""
    matches = [r for r in load_records() if r.id.startswith(run_id)] if run_id else []
    exact = [r for r in matches if r.id == run_id]
    if exact or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise KeyError(f"no run {run_id!r} (see `nanochat-workbench runs`)")
    raise KeyError(f"{run_id!r} matches {len(matches)} runs; give more of the id")


def load_records() -> list[RunRecord]:
    """Every record, newest first; unreadable files are skipped."""
    records = []
    folder = records_dir()
    if not folder.is_dir():
        return records
    for path in folder.glob("*.json"):
        try:
            records.append(RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    records.sort(key=lambda r: r.started, reverse=True)
    return records

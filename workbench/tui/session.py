"""What the TUI remembers across saves: loss curves of earlier saves, and the learner's file as it was when
each component last passed (so a regression can be shown as a diff).

One `Session` per workspace, persisted in `<workspace>/.workbench/tui_state.json` so that reopening the TUI keeps
the history. It reads check results (the JSON dict of `nanochat-workbench check --json`) and never runs anything.
"""

import difflib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from nanochat.fsutil import atomic_write
from workbench.check.result import FAILING, CheckResult, Component, Status, current_method

HISTORY_LEN = 40  # saves kept for the loss history


@dataclass
class Regression:
    qualname: str
    status: str
    detail: str
    diff: str  # unified diff of the learner file from when it last passed to now ("" when unchanged)


@dataclass
class Report:
    """One check result as the TUI shows it: the runner's dict plus what the session worked out around it."""

    result: CheckResult
    source: str | None  # the learner file's text the check ran on
    seconds: float  # wall time from the save being seen to the result
    finished_at: float
    regressions: list[Regression] = field(default_factory=list)

    @property
    def components(self) -> list[Component]:
        return self.result.get("components") or []

    def current_method(self) -> str | None:
        """The method the learner is on: a regression, the next TODO, or the first component to fix."""
        return current_method(self.result, self.regressions)

    def status_of(self, qualname: str) -> str | None:
        for comp in self.components:
            if comp.get("qualname") == qualname:
                return comp.get("status")
        return None


@dataclass
class SaveRecord:
    time: float
    ok: bool
    stage: str
    losses: list[float]


@dataclass
class Session:
    state_path: Path | None = None
    history: list[SaveRecord] = field(default_factory=list)
    last_pass: dict[str, str] = field(default_factory=dict)  # qualname -> sha of the source when it last passed
    sources: dict[str, str] = field(default_factory=dict)  # sha -> source text

    @classmethod
    def load(cls, workspace: Path) -> "Session":
        """The session saved in the workspace, or a fresh one (a damaged state file is set aside, not fatal)."""
        path = Path(workspace) / ".workbench" / "tui_state.json"
        session = cls(state_path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            session.history = [SaveRecord(**r) for r in data.get("history", [])]
            session.last_pass = dict(data.get("last_pass", {}))
            session.sources = dict(data.get("sources", {}))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError):
            try:
                path.replace(path.with_suffix(".json.damaged"))
            except OSError:
                pass
        return session

    def record(self, result: CheckResult, source: str | None) -> list[Regression]:
        """Take in one check result and the file text it was run on; return the regressions it shows."""
        losses = [float(x) for x in (result.get("losses") or [])]
        self.history.append(SaveRecord(time.time(), bool(result.get("ok")), str(result.get("stage", "")), losses))
        del self.history[:-HISTORY_LEN]
        regressions = []
        sha = _sha(source) if source is not None else None
        for comp in result.get("components") or []:
            name, status = comp.get("qualname", ""), comp.get("status", "")
            if status == Status.PASS and sha is not None:
                self.last_pass[name] = sha
                self.sources[sha] = source
            elif status in FAILING and name in self.last_pass:  # it passed before: a regression
                before = self.sources.get(self.last_pass[name], "")
                regressions.append(Regression(name, status, comp.get("detail", ""), _diff(before, source or "")))
        self.sources = {k: v for k, v in self.sources.items() if k in set(self.last_pass.values())}
        return regressions

    def loss_history(self) -> list[float]:
        """The last loss of each save that trained (one point per save)."""
        return [r.losses[-1] for r in self.history if r.losses]

    def previous_runs(self, n: int = 4) -> list[list[float]]:
        """Loss curves of up to `n` saves before the latest, oldest first."""
        runs = [r.losses for r in self.history[:-1] if r.losses]
        return runs[-n:]

    def state(self) -> str:
        """The state as the JSON text save() writes (taken on the UI thread, written from another)."""
        return json.dumps({"history": [r.__dict__ for r in self.history], "last_pass": self.last_pass,
                           "sources": self.sources})

    def save(self, state: str | None = None) -> str | None:
        """Write `state` (default: the state now) atomically; returns None, or what went wrong (a read-only
        workspace is not fatal)."""
        if self.state_path is None:
            return None
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_path, self.state() if state is None else state)
        except OSError as e:
            return f"could not save the TUI's history to {self.state_path}: {e.strerror or e}"
        return None


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _diff(before: str, after: str, name: str = "learner file") -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"{name} (last pass)", tofile=f"{name} (now)", n=2,
    )
    return "".join(lines)

"""The TUI's messages: what workers and widgets report upwards to the app (state flows down as reactives)."""

from dataclasses import dataclass, field

from textual.message import Message


@dataclass
class WatcherReady(Message):
    """The file watcher is running; `polling` when native file events did not arrive and we poll instead."""

    polling: bool
    detail: str
    fell_back: bool = False  # native events were tried and did not arrive: polling took over


@dataclass
class FilesChanged(Message):
    """Watched files in the workspace changed on disk (names, not paths)."""

    names: set[str]


@dataclass
class CheckStarted(Message):
    reason: str  # "save", "start", "by hand"
    name: str  # the learner file's name: learner_gpt.py, or a track file (learner_muon.py, ...)


@dataclass
class CheckFinished(Message):
    """A runner returned a result (the `check --json` dict) for the file text in `source`: the warm worker for the
    GPT file, the track runner for a track file."""

    result: dict
    source: str | None
    seconds: float
    name: str  # the learner file's name


@dataclass
class CheckCrashed(Message):
    """The runner itself failed (not the learner's code): shown as a notification with the fix."""

    message: str


@dataclass
class RunOutput(Message):
    """A line from a training run: a parsed metrics.jsonl record, or a log line (`record` is None)."""

    run_id: str
    line: str = ""
    record: dict | None = None


@dataclass
class RunExited(Message):
    run_id: str
    returncode: int | None


@dataclass
class ChatEvent(Message):
    """One event streamed from the chat worker process: `kind` is token | tool | tool_output | done | error | ready."""

    kind: str
    text: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class WarmupProgress(Message):
    """The checker's warm-up reached a stage ({"done", "total", "stage"}), or finished (None)."""

    progress: dict | None


@dataclass
class JobOutput(Message):
    """A line printed by an eval or report job (workbench/tui/services/jobs.py); `kind` is a JobKind."""

    kind: str
    line: str


@dataclass
class JobExited(Message):
    kind: str
    returncode: int | None


@dataclass
class WebChatChanged(Message):
    """The web chat server started listening (url), stopped, or failed (error: its last line)."""

    url: str | None
    error: str | None = None


@dataclass
class RemoteProgress(Message):
    """A step of a remote run (launch progress, a log line, its state); `finished` once it has ended."""

    line: str
    state: str | None = None
    finished: bool = False

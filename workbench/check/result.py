"""The check result: the one schema the judge writes and the CLI report, `--json`, the TUI and STATUS.md read.

A result is a plain dict (it travels as JSON from the worker and `check --json` prints it as it is), typed here
as `CheckResult`; its components are `Component`s. Decisions are made on `Status`, `NumericVerdict` and `Stage` — the
words themselves are spelled only in this module. `Status` and friends are `str` enums, so a value read back
from JSON ("pass") equals its member (Status.PASS).
"""

from enum import Enum
from typing import TypedDict


class _Word(str, Enum):
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Status(_Word):
    """A component's status in the result."""
    PASS = "pass"
    MISMATCH = "mismatch"  # it runs, but differs from the reference
    ERROR = "error"  # it raised
    TODO = "todo"  # not written yet, or waits for a method that is not
    SKIPPED = "skipped"  # not run (the check stopped earlier)
    NOT_REACHED = "not reached"  # could not run: the check process stopped first (timeout, crash, exit, stop)
    EXPERIMENT = "experiment"  # differs from the reference on purpose: the learner marked it as an experiment


FAILING = (Status.MISMATCH, Status.ERROR)  # what the learner has to fix (a TODO is not a failure)
ACCEPTED = (Status.PASS, Status.EXPERIMENT)  # a check whose rows are all of these is ok (exit code 0)
EXPERIMENT_MARKER = "# workbench: experiment"  # a comment inside a method that marks it as an experiment


class Outcome(_Word):
    """What the forked child observed for one experiment or the training pipeline (before the judge)."""
    RUNNING = "running"
    RAN = "ran"  # an experiment that ran to the end (the judge decides pass or mismatch)
    DONE = "done"
    TODO = "todo"  # the learner's NotImplementedError in the method itself
    WAITS = "waits"  # a NotImplementedError in a method it calls
    ERROR = "error"
    SKIPPED = "skipped"


class NumericVerdict(_Word):
    """Why a numeric difference is what it is (the float64 re-run)."""
    WRONG_MATH = "wrong math"
    FLOAT_NOISE = "float noise"


class Stage(_Word):
    """The stages of a check, in order: the result's `stage` is the last one reached."""
    IMPORT = "import"
    CONSTRUCT = "construct"
    INIT = "init"
    FORWARD = "forward"
    BACKWARD = "backward"
    OPTIMIZE = "optimize"
    TRAIN = "train"
    GENERATE = "generate"
    DONE = "done"


STAGES = tuple(Stage)


def stage_index(stage: str | None) -> int | None:
    """The position of `stage` in STAGES, or None for anything else."""
    try:
        return STAGES.index(Stage(stage))
    except ValueError:
        return None


class Component(TypedDict, total=False):
    qualname: str
    phase: int
    check: str  # what the row checks
    status: Status
    detail: str  # for the learner: why, or what passed
    max_abs_diff: float | None
    lesson: str | None
    line: int | None  # the def line in the learner's file
    seconds: float | None
    verdict: NumericVerdict  # with a numeric mismatch, and with a pass that only float rounding separates
    max_abs_diff_float64: float | None
    error_line: int | None
    follows_experiment: list[str]  # passes against the reference with these experiments of the learner in place
    notes: list[str]  # remarks that change nothing in the verdict (e.g. "rotary tables kept in bfloat16")


class ExperimentRun(TypedDict, total=False):
    """The learner's model and the reference trained side by side, when the file has experiments.

    One run for all experiments (they live in one model). `learner_losses[i]` / `reference_losses[i]` is the
    training loss at step i (on batch i, before that step's update); the finals are the mean loss on held-out
    batches after the last step. When the learner's model could not be trained, `learner_losses` is empty and
    `reason` says why."""
    qualnames: list[str]  # the methods marked as experiments
    steps: int
    tokens_per_step: int
    optimizer: str  # how both were trained (the same for both unless setup_optimizers is an experiment)
    same_start: bool  # both started from the same weights (the reference's init, loaded into the learner's model)
    learner_losses: list[float]
    reference_losses: list[float]
    learner_final: float | None
    reference_final: float | None
    reason: str | None


class Todo(TypedDict):
    qualname: str | None
    phase: int | None
    message: str
    file: str | None
    line: int | None
    def_line: int | None
    lesson: str | None


class CheckError(TypedDict, total=False):
    type: str  # the exception's type, or Timeout / Crash / Exit / OutOfMemory / NonFinite / WorkbenchError
    message: str
    file: str | None
    line: int | None
    qualname: str | None
    traceback: str
    signal: str
    exit_code: int
    original_type: str
    first_nonfinite: dict


class CheckResult(TypedDict, total=False):
    file: str
    track: str  # a track file's result (workbench/tracks/runner.py): "optimizer", "data", ...; absent for the GPT
    ok: bool
    stage: Stage
    next_todo: Todo | None
    error: CheckError | None
    components: list[Component]
    lead: str | None  # the first component to fix
    shapes: list[dict]
    first_nonfinite: dict | None
    losses: list[float]
    stdout_tail: str
    stdout_bytes: int
    stdout_lines: int
    timed_out: bool
    timings: dict
    config: dict
    steps: int
    reference: dict
    experiment: ExperimentRun  # only when the file has experiments (marked, or `check --experiment`)


def failed_result(path: str, message: str, traceback: str = "") -> CheckResult:
    """The result of a check the workbench itself could not run (its own failure, never the learner's)."""
    return {"file": path, "ok": False, "stage": Stage.IMPORT, "next_todo": None, "components": [],
            "shapes": [], "losses": [], "stdout_tail": "", "timings": {},
            "error": {"type": "WorkbenchError", "message": message, "file": None, "line": None,
                      "traceback": traceback}}


def is_failing(component: Component) -> bool:
    return component.get("status") in FAILING


def is_accepted(component: Component) -> bool:
    return component.get("status") in ACCEPTED


def lead_component(components: list[Component]) -> Component | None:
    """The first component to fix: rows are in data-flow order, so the first failing one explains the rest."""
    return next((c for c in components if is_failing(c)), None)


def current_method(result: CheckResult | None, regressions=()) -> str | None:
    """The method the learner is on: the one an error of the learner's code is in, then a regression, then the
    next TODO, then the first failing component."""
    if not result:
        return None
    error_in = (result.get("error") or {}).get("qualname")
    if error_in:
        return error_in
    if regressions:
        return regressions[0].qualname
    todo = result.get("next_todo")
    if todo:
        return todo.get("qualname")
    lead = lead_component(result.get("components") or [])
    return lead.get("qualname") if lead else None

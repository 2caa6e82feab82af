"""Rows of a track's check: run one learner function, turn what happened into a `Component`, compare tensors.

Every track's probes use these three helpers, so a TODO, a crash and a numeric mismatch read the same in every
track (and the same as in the GPT check: workbench/check/result.py is the schema):

    got, row = attempt(exercise, learner.muon_update, params, grads, ...)
    if row: return row                                   # a TODO, or an error in the learner's code
    diff = max_abs_diff(got, want)
    return passed(exercise, "matches the reference", diff) if diff < tol else mismatch(exercise, why, diff)

A NotImplementedError raised in the exercise's own function is a TODO; one raised further down (a function it
calls that is still a TODO) makes the row a TODO that waits for that function. Any other exception is an error
with the line of the learner's file it came from.
"""

import math
import traceback
from types import ModuleType

from workbench.check.result import Component, NumericVerdict, Status
from workbench.tracks.base import Exercise


def finite(x):
    """`x`, or None for a float that is NaN or inf (the result is JSON: `check --json` prints no Infinity)."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def row(exercise: Exercise, status: Status, detail: str, diff: float | None = None, **extra) -> Component:
    out: Component = {"qualname": exercise.qualname, "check": exercise.check, "status": status, "detail": detail,
                      "max_abs_diff": finite(diff), "lesson": exercise.lesson}
    out.update({key: finite(value) for key, value in extra.items()})
    return out


def passed(exercise: Exercise, detail: str, diff: float | None = None) -> Component:
    return row(exercise, Status.PASS, detail, diff)


def mismatch(exercise: Exercise, detail: str, diff: float | None = None,
             verdict: NumericVerdict | None = NumericVerdict.WRONG_MATH) -> Component:
    extra = {"verdict": verdict} if verdict and diff is not None else {}
    return row(exercise, Status.MISMATCH, detail, diff, **extra)


def _learner_frames(tb, learner_file: str):
    return [f for f in traceback.extract_tb(tb) if f.filename == learner_file]


def attempt(exercise: Exercise, learner: ModuleType, fn, *args, **kwargs):
    """Call `fn` (a learner function); return (value, None), or (None, row) when it raised."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError as e:
        frames = _learner_frames(e.__traceback__, getattr(learner, "__file__", ""))
        where = frames[-1].name if frames else None
        own = exercise.qualname.rsplit(".", 1)[-1]
        if where in (None, own):
            line = frames[-1].lineno if frames else None
            return None, row(exercise, Status.TODO, str(e) or "not written yet", line=line)
        return None, row(exercise, Status.TODO, f"waits for {where}, which is still a TODO ({e})")
    except Exception as e:  # the learner's code raised: an error row, never a workbench failure
        frames = _learner_frames(e.__traceback__, getattr(learner, "__file__", ""))
        line = frames[-1].lineno if frames else None
        where = f" (line {line})" if line else ""
        return None, row(exercise, Status.ERROR, f"{type(e).__name__}: {e}{where}", error_line=line)


def not_reached(track_file, phase: int | None, lines: dict, why: str) -> list[Component]:
    """A NOT_REACHED row per exercise of the file: the check stopped (`why`, a few words) before they ran."""
    return [{"qualname": e.qualname, "check": e.check, "status": Status.NOT_REACHED,
             "detail": f"not reached: {why}", "max_abs_diff": None, "lesson": e.lesson,
             "line": lines.get(e.qualname), "phase": phase} for e in track_file.exercises]


def max_abs_diff(got, want) -> float:
    """The largest absolute difference between two tensors (inf when the shapes differ or `got` is no tensor)."""
    if not hasattr(got, "shape") or not hasattr(got, "double") or tuple(got.shape) != tuple(want.shape):
        return float("inf")
    if not got.numel():
        return 0.0
    g, w = got.double(), want.double()
    diff = (g - w).abs().masked_fill(g == w, 0.0)  # equal infinities agree
    return diff.nan_to_num(nan=float("inf")).max().item()  # a NaN on either side never passes


FLOAT64_TOL = 1e-9  # a float64 re-run that differs by less than this is the same math


def numeric(exercise: Exercise, diff: float, tol: float, ok_detail: str, wrong_detail: str,
            diff64: float | None = None) -> Component:
    """A numeric row: a pass within `tol`; else a pass by float rounding when the float64 re-run (`diff64`) agrees;
    else a mismatch (wrong math) that says `wrong_detail`."""
    if diff <= tol:
        return passed(exercise, ok_detail, diff)
    if diff64 is not None and diff64 <= FLOAT64_TOL:
        return row(exercise, Status.PASS, f"{ok_detail} (float32 rounding only: float64 agrees to {diff64:.1e})",
                   diff, verdict=NumericVerdict.FLOAT_NOISE, max_abs_diff_float64=diff64)
    out = mismatch(exercise, wrong_detail, diff)
    if diff64 is not None:
        out["max_abs_diff_float64"] = finite(diff64)
    return out


def max_diff_all(got: list, want: list) -> float:
    """The largest max_abs_diff over pairs of tensors (inf when the counts differ)."""
    if len(got) != len(want):
        return float("inf")
    return max((max_abs_diff(g, w) for g, w in zip(got, want)), default=0.0)

"""Run an instrument's job on a model file in a process of its own, never in the caller's.

    outcome = run_job("workbench.instruments.attention", request, timeout=60)
    outcome.kind is JobKind.OK / TODO / ERROR / USAGE; outcome.data is what the job returned

The job is `job(request) -> dict` in the named module; it runs in `python -m workbench.instruments.isolate`, a
child with the check engine's isolation (workbench/check/worker.py): its own session and process group, the
kernel kills it when the caller dies, on the CPU an address-space cap of its own size plus a budget (default half
the RAM), faulthandler for a traceback on a crash or at the timeout, and the learner's prints captured (the tail
is kept). At the timeout the child is asked where it is (SIGUSR1) and its whole group is killed.

What went wrong is sorted the check engine's way (workbench/check/probe.py): a NotImplementedError raised in
the learner's file is their next TODO, an exception located in their file is their error (file, line, method),
a model file or checkpoint that can't be loaded is a one-line error, and `UsageError` (a layer that does not
exist, say) is a usage error: exit 2.
"""

import collections
import faulthandler
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

from workbench.check.result import CheckError, Todo

OUTPUT_KEEP = 16 * 1024  # bytes of the job's output kept (the tail)
DUMP_WAIT_S = 0.5


class UsageError(Exception):
    """The request can't be served as asked (raised by a job); shown as a usage error, exit 2."""


class JobKind(str, Enum):
    OK = "ok"
    TODO = "todo"  # the learner's code reached a method that is still a TODO
    ERROR = "error"  # the learner's code failed, the model could not be loaded, or the process died
    USAGE = "usage"  # the request does not fit the model


@dataclass
class JobOutcome:
    kind: JobKind
    data: dict | None = None
    todo: Todo | None = None
    error: CheckError | None = None
    output: str = ""  # the tail of what the job (the learner's code included) printed
    notes: list[str] = field(default_factory=list)  # what the job worked around (an init_weights TODO, say)


# ---------------------------------------------------------------------------------------------------------------
# the caller's side


def run_job(module: str, request: dict, *, timeout: float, memory_gb: float | None = None) -> JobOutcome:
    """Run `module.job(request)` in a child process and say how it went."""
    with tempfile.TemporaryDirectory(prefix="wb-instrument-") as scratch:
        paths = {name: os.path.join(scratch, name) for name in ("request.json", "result.json", "fault.txt")}
        with open(paths["request.json"], "w", encoding="utf-8") as f:
            json.dump({"module": module, "request": request, "memory_gb": memory_gb, "parent": os.getpid(),
                       "result": paths["result.json"], "fault": paths["fault.txt"]}, f)
        proc = subprocess.Popen([sys.executable, "-m", "workbench.instruments.isolate", paths["request.json"]],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        tail = collections.deque(maxlen=64)
        reader = threading.Thread(target=_keep_tail, args=(proc.stdout, tail), daemon=True)
        reader.start()
        timed_out = _wait(proc, timeout, paths["fault.txt"])
        reader.join(timeout=2)
        output = b"".join(tail)[-OUTPUT_KEEP:].decode("utf-8", "replace")
        if not timed_out and os.path.exists(paths["result.json"]):
            with open(paths["result.json"], encoding="utf-8") as f:
                return _outcome(json.load(f), output)
        error = _died(request.get("file"), proc.returncode, timed_out, timeout, _read(paths["fault.txt"]))
        return JobOutcome(JobKind.ERROR, error=error, output=output)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _keep_tail(stream, tail: collections.deque) -> None:
    for chunk in iter(lambda: stream.read1(4096), b""):
        tail.append(chunk)


def _wait(proc: subprocess.Popen, timeout: float, fault_path: str) -> bool:
    """Wait for the child; at the timeout ask it for its traceback, then kill its group. True if it timed out."""
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        pass
    try:
        os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + DUMP_WAIT_S
        while time.monotonic() < deadline and not _read(fault_path):
            time.sleep(0.02)
        time.sleep(0.05)  # let faulthandler finish the dump it started
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    return True


def _outcome(data: dict, output: str) -> JobOutcome:
    return JobOutcome(JobKind(data["kind"]), data=data.get("data"), todo=data.get("todo"), error=data.get("error"),
                      output=output, notes=data.get("notes") or [])


def _died(path: str | None, returncode: int | None, timed_out: bool, timeout: float, fault: str) -> CheckError:
    """The error of a child that ended without a result: where it was (from faulthandler) and how it ended."""
    from workbench.check.judge import SIGNAL_MEANING, parse_fault_dump
    from workbench.check.probe import SourceMap

    line, dump = parse_fault_dump(fault, os.path.abspath(path)) if path else (None, fault.strip())
    qualname = SourceMap(path).qualname_at(line) if line else None
    where = f" in {qualname or '<module>'} (line {line})" if line else ""
    error: CheckError = {"file": path if line else None, "line": line, "qualname": qualname, "traceback": dump}
    if timed_out:
        error.update(type="Timeout", message=f"stopped after {timeout:g} s{where}: the code is stuck in a loop or "
                                             f"very slow (--timeout to allow more)")
    elif returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        error.update(type="Crash", signal=name,
                     message=f"the process died of {name} ({SIGNAL_MEANING.get(name, 'a signal')}){where}")
    else:
        error.update(type="Exit", exit_code=returncode,
                     message=f"the process exited with code {returncode}{where} before it reported: something "
                             f"called sys.exit()/os._exit() or a C library called exit()")
    return error


# ---------------------------------------------------------------------------------------------------------------
# the child's side


def note(request: dict, text: str) -> None:
    """Record something the job worked around; it is shown with the result."""
    request.setdefault("_notes", []).append(text)


def todo_of(exc: BaseException, path: str | None) -> Todo | None:
    """The Todo record when `exc` is a NotImplementedError raised by the learner's file at `path`, else None."""
    from workbench.check.judge import phase_for
    from workbench.check.probe import SourceMap, exception_info, is_todo
    from workbench.course.phases import LESSON_FOR

    if path is None or not is_todo(exc, os.path.abspath(path)):
        return None
    smap = SourceMap(path)
    info = exception_info(exc, smap)
    qualname = info["qualname"]
    return {"qualname": qualname, "phase": phase_for(qualname), "message": info["message"], "file": info["file"],
            "line": info["line"], "def_line": smap.def_line(qualname) if qualname else None,
            "lesson": LESSON_FOR.get(qualname)}


def _classify(exc: BaseException, path: str | None) -> dict:
    """{"kind", "todo"|"error"} for an exception that ended the job."""
    from nanochat.checkpoint_manager import CheckpointError
    from nanochat.model_source import ModelSourceError
    from workbench.check.probe import SourceMap, exception_info

    if isinstance(exc, UsageError):
        return {"kind": JobKind.USAGE, "error": {"type": "UsageError", "message": str(exc)}}
    if isinstance(exc, (ModelSourceError, CheckpointError)):
        return {"kind": JobKind.ERROR, "error": {"type": type(exc).__name__, "message": str(exc)}}
    todo = todo_of(exc, path)
    if todo is not None:
        return {"kind": JobKind.TODO, "todo": todo}
    if path is not None:
        info = exception_info(exc, SourceMap(path))
    else:
        info = {"type": type(exc).__name__, "message": str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                "file": None, "line": None, "qualname": None}
        import traceback
        info["traceback"] = "".join(traceback.format_exception(exc))
    return {"kind": JobKind.ERROR, "error": {k: info.get(k) for k in ("type", "message", "file", "line", "qualname",
                                                                      "traceback")}}


def _isolate_self(spec: dict) -> None:
    """The check engine's protections, applied to this process before any model code runs."""
    from workbench.check.worker import default_memory_budget, die_with_parent, own_address_space

    die_with_parent(spec["parent"])
    fault = open(spec["fault"], "w")
    faulthandler.enable(file=fault, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=fault, all_threads=True, chain=False)
    import torch
    if torch.cuda.is_available():
        return  # CUDA reserves huge address ranges: an address-space cap would break it
    gb = spec.get("memory_gb")
    budget = int(gb * (1 << 30)) if gb else default_memory_budget()
    limit = own_address_space() + budget
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    _isolate_self(spec)
    request = spec["request"]
    path = request.get("file")
    try:
        data = importlib.import_module(spec["module"]).job(request)
        result = {"kind": JobKind.OK, "data": data}
    except BaseException as e:  # the learner's code may raise anything, SystemExit and KeyboardInterrupt too
        result = _classify(e, path)
    result["notes"] = request.get("_notes", [])
    sys.stdout.flush()
    with open(spec["result"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    # run as the package module, so that jobs raise the very UsageError that _classify catches
    from workbench.instruments.isolate import main as package_main
    sys.exit(package_main())

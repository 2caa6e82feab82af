"""Check a track file (optimizer, data, training, engine) in a child process and return the `CheckResult` dict.

    result = check_track_file("learner_muon.py")                 # blocking (the CLI)
    result = await run_track_check("learner_muon.py")            # asyncio (the TUI); cancelling kills the child

The learner's code runs only in `python -m workbench.tracks.child` (workbench/tracks/child.py): a session and
process group of its own (killed as a whole when the check ends, times out or is cancelled), a memory cap, its
output in a file whose tail comes back as `stdout_tail`. A timeout asks the child for its stack first (SIGUSR1,
faulthandler), so the error says where the learner's code was stuck. Import errors, crashes, exits and timeouts
are the learner's errors, with file and line where there is one; only the workbench's own failures are called
a workbench error. This module imports nothing heavy.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.check.result import CheckResult, Stage, Status, failed_result
from workbench.check.worker import default_memory_budget
from workbench.course.phases import track_phase_number
from workbench.tracks.base import Track, TrackFile
from workbench.tracks.recognise import def_lines, recognise

DEFAULT_TIMEOUT = 60.0
DUMP_WAIT_S = 1.0  # how long a timed-out child gets to write its stack
TAIL_BYTES = 8192  # of the learner's output, kept in the result
REPO_ROOT = Path(__file__).resolve().parents[2]
IMPORTED_SUFFIX = ".imported"  # the child creates <out>.imported once the learner's file is imported
_DUMP_FRAME = re.compile(r'File "(.+)", line (\d+) in (\S+)')


class NotATrackFile(ValueError):
    """The file is the model's (learner_gpt.py): the GPT check (workbench/check/) is the one for it."""


@dataclass(frozen=True)
class Job:
    """One check: the file, its track, and where the child writes its result, stack dump and output."""
    path: str
    track: Track
    track_file: TrackFile
    out: str
    dump: str
    log: str

    def command(self) -> list[str]:
        return [sys.executable, "-m", "workbench.tracks.child", "--file", self.path, "--track", str(self.track),
                "--reference", self.track_file.reference_module, "--out", self.out, "--dump", self.dump,
                "--memory", str(default_memory_budget())]


def child_env() -> dict:
    """The environment of the child: this one, with the repository importable even when not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


def prepare(path: str, tmp: str) -> Job:
    """Recognise the file (NotATrackFile for the model's; OSError when it cannot be read)."""
    path = os.path.realpath(os.path.expanduser(str(path)))
    found = recognise(path)
    if found.track_file is None:
        raise NotATrackFile(f"{os.path.basename(path)} is a model file: the GPT check (workbench.check) checks it")
    return Job(path, found.track, found.track_file, os.path.join(tmp, "result.json"), os.path.join(tmp, "dump.txt"),
               os.path.join(tmp, "output.txt"))


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def ask_for_stack(pid: int, dump: str) -> None:
    """SIGUSR1 to a stuck child (faulthandler writes its stack), then wait until the dump has something."""
    if not hasattr(signal, "SIGUSR1"):
        return
    size = os.path.getsize(dump) if os.path.exists(dump) else 0
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return
    deadline = time.monotonic() + DUMP_WAIT_S
    while time.monotonic() < deadline and (os.path.getsize(dump) if os.path.exists(dump) else 0) == size:
        time.sleep(0.02)
    time.sleep(0.05)  # let the rest of the dump land


def check_track_file(path: str, timeout: float = DEFAULT_TIMEOUT) -> CheckResult:
    """Check one track file in a child process; blocks until the result (NotATrackFile for a model file)."""
    with tempfile.TemporaryDirectory(prefix="wb-track-") as tmp:
        try:
            job = prepare(path, tmp)
        except OSError as e:
            return unreadable(path, e)
        start, timed_out = time.monotonic(), False
        with open(job.log, "wb") as log:
            proc = subprocess.Popen(job.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=tmp, env=child_env(), start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            ask_for_stack(proc.pid, job.dump)
        finally:
            kill_group(proc.pid)
            proc.wait()
        return interpret(job, proc.returncode, timed_out, timeout, time.monotonic() - start)


async def run_track_check(path: str, timeout: float = DEFAULT_TIMEOUT) -> CheckResult:
    """check_track_file for asyncio: the child is awaited, not waited on; cancelling the task kills it."""
    with tempfile.TemporaryDirectory(prefix="wb-track-") as tmp:
        try:
            job = prepare(path, tmp)
        except OSError as e:
            return unreadable(path, e)
        start, timed_out = time.monotonic(), False
        with open(job.log, "wb") as log:
            proc = await asyncio.create_subprocess_exec(*job.command(), stdin=subprocess.DEVNULL, stdout=log,
                                                        stderr=subprocess.STDOUT, cwd=tmp, env=child_env(),
                                                        start_new_session=True)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            await asyncio.to_thread(ask_for_stack, proc.pid, job.dump)
        finally:  # also on cancellation: the child and everything in its group go
            kill_group(proc.pid)
            await proc.wait()
        return interpret(job, proc.returncode, timed_out, timeout, time.monotonic() - start)


def unreadable(path: str, e: OSError) -> CheckResult:
    result = failed_result(str(path), f"cannot read {path}: {e.strerror or e}")
    result["error"]["type"] = "FileError"  # the learner's file, not the workbench: say so plainly
    return result


def output_tail(log: str) -> tuple[str, int, int]:
    """(the last TAIL_BYTES of the learner's output, its size in bytes, its line count)."""
    try:
        size = os.path.getsize(log)
        with open(log, "rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
            f.seek(0)
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return "", 0, 0
    return tail.decode("utf-8", "replace"), size, lines


def stuck_at(dump: str, path: str) -> tuple[int | None, str | None]:
    """(line, function) of the learner's innermost frame in the faulthandler dump (the first thread listed is
    the one that was signalled or crashed)."""
    try:
        text = Path(dump).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text)[-1:] + [text]:
        for match in _DUMP_FRAME.finditer(block):
            if os.path.realpath(match.group(1)) == path:
                return int(match.group(2)), match.group(3)
    return None, None


def interpret(job: Job, returncode: int, timed_out: bool, timeout: float, elapsed: float) -> CheckResult:
    """The child's result, or — when it left none — an error that says what happened to it."""
    tail, size, lines = output_tail(job.log)
    result = None
    if not timed_out and os.path.exists(job.out):
        try:
            result = json.loads(Path(job.out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
    if isinstance(result, dict) and "workbench_error" in result:
        return failed_result(job.path, result["workbench_error"], result.get("traceback", ""))
    if not isinstance(result, dict):
        result = stopped_result(job, returncode, timed_out, timeout)
    result.update(stdout_tail=tail, stdout_bytes=size, stdout_lines=lines, timed_out=timed_out)
    result.setdefault("timings", {}).update(total_s=elapsed, child="subprocess")
    return result


def stopped_result(job: Job, returncode: int, timed_out: bool, timeout: float) -> CheckResult:
    """A check that ended without a result: timeout, signal, exit. Every exercise is `not reached`."""
    line, function = stuck_at(job.dump, job.path)
    where = f" in {function} (line {line})" if line else ""
    if timed_out:
        error = {"type": "Timeout", "message": f"your code did not finish within {timeout:g} s{where}"}
    elif returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        error = {"type": "Crash", "signal": name, "message": f"your code crashed the check process ({name}){where}"}
    else:
        error = {"type": "Exit", "exit_code": returncode,
                 "message": f"the check process exited with code {returncode}{where} before the check finished"}
    error.update(file=job.path, line=line, qualname=function)
    try:
        lines = def_lines(Path(job.path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        lines = {}
    rows = [{"qualname": e.qualname, "check": e.check, "status": Status.NOT_REACHED, "detail": error["message"],
             "max_abs_diff": None, "lesson": e.lesson, "line": lines.get(e.qualname)}
            for e in job.track_file.exercises]
    imported = os.path.exists(job.out + IMPORTED_SUFFIX)
    for r in rows:
        r["phase"] = track_phase_number(job.track)
    return {"file": job.path, "track": str(job.track), "reference": {"module": job.track_file.reference_module},
            "ok": False, "stage": Stage.DONE if imported else Stage.IMPORT, "next_todo": None, "error": error,
            "components": rows, "lead": None, "shapes": [], "losses": [], "timings": {}}

"""Check a track file (optimizer, data, training, engine) in a child process and return the `CheckResult` dict.

    result = check_track_file("learner_muon.py")                 # blocking (the CLI)
    result = await run_track_check("learner_muon.py")            # asyncio (the TUI); cancelling kills the child
    prestart()                                                   # keep a warm child ready from now on
    close_spares()                                               # the app quits (atexit does it too)

The learner's code runs only in `python -m workbench.tracks.child` (workbench/tracks/child.py): a session and
process group of its own (killed as a whole when the check ends, times out or is cancelled), a memory cap, its
output in a file whose tail comes back as `stdout_tail`. A timeout asks the child for its stack first (SIGUSR1,
faulthandler), so the error says where the learner's code was stuck. Import errors, crashes, exits and timeouts
are the learner's errors, with file and line where there is one; only the workbench's own failures are called
a workbench error. This module imports nothing heavy.

A child imports torch (seconds) before it can check anything, so a long-lived caller keeps one SPARE: a child
started ahead of time that has imported everything and waits for a request on its stdin. A check takes the spare
(or starts a child when there is none), and once it is over the next spare is started, so the check after it
pays no start-up. Each child runs one check and exits, as a fresh one would. `prestart()` (the TUI, once the
workspace has track files) and the first `run_track_check` turn spares on; a plain `check_track_file` (the CLI's
one-shot) starts its own child and leaves none behind. `timings` says which it was: child "spare" or "subprocess",
child_ready_s (how long the request waited for the child's imports: 0 for a warm spare), spare_age_s, child_pid.
"""

import asyncio
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from workbench.check.result import CheckResult, Stage, failed_result
from workbench.check.worker import default_memory_budget, learner_frames
from workbench.course.phases import track_phase_number
from workbench.tracks.base import Track, TrackFile
from workbench.tracks.child import DUMP_NAME, READY_NAME, RESULT_NAME
from workbench.tracks.outcome import not_reached
from workbench.tracks.recognise import def_lines, recognise

STOPPED_WORDS = {"Timeout": "the check timed out first", "Crash": "the check process crashed first",
                 "Exit": "the check process exited first"}

DEFAULT_TIMEOUT = 60.0
DUMP_WAIT_S = 1.0  # how long a timed-out child gets to write its stack
STALL_AFTER_S = 8.0  # a check running this long has its stack sampled (every track's check of a right answer
STALL_EVERY_S = 1.0  # takes a few seconds at most here), this often; it is stuck when STALL_SAMPLES samples in a
STALL_SAMPLES = 4  # row find the learner's code running in the same function, called from the same place
TAIL_BYTES = 8192  # of the learner's output, kept in the result
REPO_ROOT = Path(__file__).resolve().parents[2]
IMPORTED_SUFFIX = ".imported"  # the child creates <out>.imported once the learner's file is imported
OUTPUT_NAME = "output.txt"
_DUMP_FRAME = re.compile(r'File "(.+)", line (\d+) in (\S+)')


class Ended(Enum):
    """How a check's child ended when it did not finish on its own."""
    TIMEOUT = "timeout"  # ran past the check's timeout
    STALL = "stall"  # the stack sampler found the learner's code in the same place on every look


class NotATrackFile(ValueError):
    """The file is the model's (learner_gpt.py): the GPT check (workbench/check/) is the one for it."""


@dataclass(frozen=True)
class Job:
    """One check: the file and its track (the child's folder says where its result, stack and output are)."""
    path: str
    track: Track
    track_file: TrackFile

    def request(self) -> bytes:
        return (json.dumps({"file": self.path, "track": str(self.track), "sent": time.time(),
                            "reference": self.track_file.reference_module}) + "\n").encode()


@dataclass
class Child:
    """A started child process and its folder (result.json, dump.txt, output.txt, ready)."""
    proc: subprocess.Popen
    folder: str
    started: float  # time.monotonic() at start

    @property
    def out(self) -> str:
        return os.path.join(self.folder, RESULT_NAME)

    @property
    def dump(self) -> str:
        return os.path.join(self.folder, DUMP_NAME)

    @property
    def log(self) -> str:
        return os.path.join(self.folder, OUTPUT_NAME)

    def ready(self) -> bool:
        """Has it imported everything (a request now waits for no import)?"""
        return os.path.exists(os.path.join(self.folder, READY_NAME))


def child_env() -> dict:
    """The environment of the child: this one, with the repository importable even when not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


def start_child() -> Child:
    """Start a child in a session of its own; it imports torch and then waits for a request on its stdin. (On
    Linux it dies with the thread that starts it: start children from a thread that lives as long as the runner.)"""
    folder = tempfile.mkdtemp(prefix="wb-track-")
    command = [sys.executable, "-m", "workbench.tracks.child", "--dir", folder, "--parent", str(os.getpid()),
               "--memory", str(default_memory_budget())]
    with open(os.path.join(folder, OUTPUT_NAME), "wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                                env=child_env(), start_new_session=True)
    return Child(proc, folder, time.monotonic())


def end_child(child: Child) -> None:
    """Kill the child's whole process group and reap it (its folder stays until remove_child)."""
    kill_group(child.proc.pid)
    try:
        child.proc.stdin.close()
    except OSError:
        pass
    child.proc.wait()


def remove_child(child: Child) -> None:
    end_child(child)
    shutil.rmtree(child.folder, ignore_errors=True)


class Spares:
    """At most one warm child waiting for a check, once turned on (prestart, or the first async check)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spare: Child | None = None
        self.on = False

    def take(self) -> tuple[Child, bool]:
        """(a child for the next check, whether it was the spare): the spare if it lives, else a new child."""
        with self.lock:
            spare, self.spare = self.spare, None
        if spare is not None and spare.proc.poll() is None:
            return spare, True
        if spare is not None:
            remove_child(spare)
        return start_child(), False

    def refill(self) -> None:
        """Start the next spare, when spares are on and there is none."""
        with self.lock:
            if self.on and self.spare is None:
                self.spare = start_child()

    def turn_on(self) -> None:
        self.on = True
        self.refill()

    def close(self) -> None:
        with self.lock:
            spare, self.spare, self.on = self.spare, None, False
        if spare is not None:
            remove_child(spare)


SPARES = Spares()
atexit.register(SPARES.close)


def prestart() -> None:
    """Keep a warm child ready for the next track check from now on (starts one now if there is none)."""
    SPARES.turn_on()


def close_spares() -> None:
    """End the waiting spare and start no more (an app that quits; atexit does it too)."""
    SPARES.close()


def spare_child() -> Child | None:
    """The waiting spare (None when there is none): for tests and diagnostics."""
    return SPARES.spare


def prepare(path: str) -> Job:
    """Recognise the file (NotATrackFile for the model's; OSError when it cannot be read)."""
    path = os.path.realpath(os.path.expanduser(str(path)))
    found = recognise(path)
    if found.track_file is None:
        raise NotATrackFile(f"{os.path.basename(path)} is a model file: the GPT check (workbench.check) checks it")
    return Job(path, found.track, found.track_file)


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def ask_for_stack(pid: int, dump: str) -> str:
    """SIGUSR1 to the child (faulthandler writes its stack), wait until the dump has grown, and return what was
    added ("" where the child wrote nothing)."""
    if not hasattr(signal, "SIGUSR1"):
        return ""
    size = os.path.getsize(dump) if os.path.exists(dump) else 0
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return ""
    deadline = time.monotonic() + DUMP_WAIT_S
    while time.monotonic() < deadline and (os.path.getsize(dump) if os.path.exists(dump) else 0) == size:
        time.sleep(0.02)
    time.sleep(0.05)  # let the rest of the dump land
    try:
        with open(dump, "rb") as f:
            f.seek(size)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def hand_over(child: Child, job: Job) -> None:
    """Send the request; a child that died meanwhile shows as its exit status, read by interpret."""
    try:
        child.proc.stdin.write(job.request())
        child.proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass


def wait_child(child: Child, path: str, timeout: float) -> Ended | None:
    """Block until the child exits (None), runs past the timeout, or stalls: from STALL_AFTER_S on its stack is
    sampled every STALL_EVERY_S, and STALL_SAMPLES samples in a row with the learner's code innermost, in the same
    function called from the same place, end it. Either way its last stack is in the dump."""
    deadline, look, samples = time.monotonic() + timeout, time.monotonic() + STALL_AFTER_S, []
    while True:
        try:
            child.proc.wait(max(0.0, min(deadline, look) - time.monotonic()))
            return None
        except subprocess.TimeoutExpired:
            pass
        sample = stall_key(ask_for_stack(child.proc.pid, child.dump), path)
        if time.monotonic() >= deadline:
            return Ended.TIMEOUT
        look = time.monotonic() + STALL_EVERY_S
        samples = (samples + [sample])[-STALL_SAMPLES:] if sample else []
        if len(samples) == STALL_SAMPLES and len(set(samples)) == 1:
            return Ended.STALL


def stall_key(dump: str, path: str) -> tuple:
    """Where a stack sample found the learner's code: () unless the innermost frame is in the learner's file (a
    library it called, an import, the workbench's own code are progress we cannot judge). The innermost frame by
    function (a loop moves between its lines), the frames around it by line."""
    frames = learner_frames(dump, path)
    if not frames or dump.split("\nThread 0x")[0].count('File "') != len(frames):
        return ()
    (file, _, function), *outer = frames
    return ((file, function), *outer)


def check_track_file(path: str, timeout: float = DEFAULT_TIMEOUT) -> CheckResult:
    """Check one track file in a child process; blocks until the result (NotATrackFile for a model file)."""
    try:
        job = prepare(path)
    except OSError as e:
        return unreadable(path, e)
    child, warm = SPARES.take()
    start = time.monotonic()
    try:
        hand_over(child, job)
        ended = wait_child(child, job.path, timeout)
        end_child(child)
        return interpret(job, child, warm, ended, timeout, start)
    finally:
        remove_child(child)
        SPARES.refill()


async def run_track_check(path: str, timeout: float = DEFAULT_TIMEOUT) -> CheckResult:
    """check_track_file for asyncio: the child is waited on in a thread; cancelling the task kills it. Turns
    spares on: the next check finds a child that has imported torch already."""
    try:
        job = prepare(path)
    except OSError as e:
        return unreadable(path, e)
    SPARES.on = True
    child, warm = SPARES.take()
    start = time.monotonic()
    try:
        hand_over(child, job)
        ended = await asyncio.to_thread(wait_child, child, job.path, timeout)
        end_child(child)
        return interpret(job, child, warm, ended, timeout, start)
    finally:  # also on cancellation: the child and everything in its group go
        remove_child(child)
        SPARES.refill()


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


def interpret(job: Job, child: Child, warm: bool, ended: Ended | None, timeout: float, start: float) -> CheckResult:
    """The child's result, or — when it left none — an error that says what happened to it."""
    tail, size, lines = output_tail(child.log)
    result = None
    if ended is None and os.path.exists(child.out):
        try:
            result = json.loads(Path(child.out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
    if isinstance(result, dict) and "workbench_error" in result:
        return failed_result(job.path, result["workbench_error"], result.get("traceback", ""))
    if not isinstance(result, dict):
        result = stopped_result(job, child, ended, timeout)
    result.update(stdout_tail=tail, stdout_bytes=size, stdout_lines=lines, timed_out=ended is not None)
    result.setdefault("timings", {}).update(total_s=time.monotonic() - start, child="spare" if warm else "subprocess",
                                            spare_age_s=start - child.started, child_pid=child.proc.pid)
    return result


def stopped_result(job: Job, child: Child, ended: Ended | None, timeout: float) -> CheckResult:
    """A check that ended without a result: timeout, stall, signal, exit. Every exercise is `not reached`."""
    returncode = child.proc.returncode
    line, function = stuck_at(child.dump, job.path)
    where = f" in {function} (line {line})" if line else ""
    if ended is Ended.STALL:
        error = {"type": "Timeout", "message": f"your code is stuck{where}: still in the same place on {STALL_SAMPLES} "
                 f"looks {STALL_EVERY_S:g} s apart — an endless loop? (a right answer takes a few seconds)"}
    elif ended is Ended.TIMEOUT:
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
    rows = not_reached(job.track_file, track_phase_number(job.track), lines, STOPPED_WORDS[error["type"]])
    imported = os.path.exists(child.out + IMPORTED_SUFFIX)
    return {"file": job.path, "track": str(job.track), "reference": {"module": job.track_file.reference_module},
            "ok": False, "stage": Stage.DONE if imported else Stage.IMPORT, "next_todo": None, "error": error,
            "components": rows, "lead": None, "shapes": [], "losses": [], "timings": {}}

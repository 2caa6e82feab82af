"""The process a track file's check runs in: `python -m workbench.tracks.child --dir D --parent PID`.

Started by workbench/tracks/runner.py ahead of the check (a warm spare) in a session (process group) of its own,
with its output going to a file in its folder D. It imports torch, torch.optim, torch._dynamo and every track's
reference and probes, writes D/ready, then waits for one request line on stdin:

    {"file": "/ws/learner_muon.py", "track": "optimizer", "reference": "nanochat.muon", "sent": <time.time()>}

It then caps its address space (RLIMIT_AS, where the OS has it), imports the learner's file by its path and runs
the track's probes: `probes.check(learner, reference) -> list[Component]`. The result (the `CheckResult` dict of
workbench/check/result.py) is written as JSON to D/result.json and the process exits: one check per process, so
nothing of one check leaks into the next. A result that never appears (a timeout, a crash, `os._exit`) is
explained by the runner from the exit status and the faulthandler dump in D/dump.txt.

It never outlives the runner, nor do the learner's processes in its group: on Linux the kernel sends it SIGTERM
when its parent dies (PR_SET_PDEATHSIG), and everywhere a thread watches the request pipe: SIGTERM, EOF on the
pipe, or a parent pid that changed kills the whole process group.
The learner's code sees /dev/null on stdin.

`run_check(path, track_file, track)` is the same check in the calling process (the tests use it on planted bugs).
"""

import argparse
import faulthandler
import functools
import importlib
import importlib.util
import inspect
import json
import os
import queue
import select
import shutil
import signal
import sys
import threading
import time
import traceback

from workbench.check.procs import die_with_parent
from workbench.check.result import CheckResult, Component, Stage, Status, lead_component
from workbench.tracks.base import Track, TrackFile, find_track_file
from workbench.tracks.outcome import not_reached
from workbench.tracks.recognise import def_lines
from workbench.course.phases import track_phase_number

OUTPUT_FILE_LIMIT = 64 << 20  # the learner's prints, per file: enough for any honest debugging
PARENT_POLL_S = 1.0  # how often a child whose pipe is quiet checks that its parent is still the runner
RESULT_NAME, DUMP_NAME, READY_NAME = "result.json", "dump.txt", "ready"  # in the check's folder (--dir)


def load_learner(path: str):
    """Import the learner's file as a module of its own (under a name that cannot clash with a real one)."""
    name = "workbench_learner_" + "".join(c if c.isalnum() else "_" for c in os.path.basename(path)[:-3])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def learner_line(exc: BaseException, path: str) -> tuple[int | None, str | None]:
    """(line, function) of the innermost frame of the learner's file in the exception's traceback."""
    if isinstance(exc, SyntaxError) and exc.filename and os.path.realpath(exc.filename) == path:
        return exc.lineno, None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) == path]
    return (frames[-1].lineno, frames[-1].name) if frames else (None, None)


def learner_error(exc: BaseException, path: str, stage_words: str) -> dict:
    """The learner's exception as the result's `error` (type, message, file, line, short traceback)."""
    line, function = learner_line(exc, path)
    kind = type(exc).__name__
    if isinstance(exc, SystemExit):
        kind, message = "Exit", f"your code called sys.exit({exc.code!r}) {stage_words}"
    elif isinstance(exc, MemoryError):
        kind, message = "OutOfMemory", f"your code ran out of memory {stage_words}"
    else:
        message = f"{kind}: {exc} ({stage_words})"
    from workbench.check.probe import trimmed_traceback
    tb = trimmed_traceback(exc, path)
    return {"type": kind, "message": message, "file": path, "line": line, "qualname": function, "traceback": tb}


def resolve(module, qualname: str):
    """(object, owner class or None) for a dotted name in `module`; AttributeError when it is missing. A method
    is looked up in the class's own namespace, so an inherited one counts as missing from the learner's class."""
    parts = qualname.split(".")
    obj, owner = getattr(module, parts[0]), None
    for part in parts[1:]:
        owner = obj
        if part not in vars(obj):
            raise AttributeError(f"{parts[0]} has no {part} of its own")
        obj = vars(obj)[part]
    return obj, owner


def whose(obj) -> str | None:
    """The source file a function (or a class's `__init__`) was written in; None when it has no Python code."""
    obj = getattr(obj, "__func__", obj)
    try:
        obj = inspect.unwrap(obj)
    except ValueError:
        return None
    code = getattr(obj, "__code__", None)
    return os.path.realpath(code.co_filename) if code else None


def ownership_row(exercise, learner, path: str) -> Component | None:
    """A row that replaces the probe's when the exercise is missing from the learner's file or is not written
    in it (imported from nanochat, inherited, assigned from another module)."""
    from workbench.tracks.outcome import row
    try:
        obj, _ = resolve(learner, exercise.qualname)
    except AttributeError:
        return row(exercise, Status.ERROR, f"{exercise.qualname} is not defined in your file: keep every function "
                                           f"and method of the skeleton, with its name")
    written_in = whose(obj)
    if written_in is not None and written_in != path:
        return row(exercise, Status.MISMATCH, f"{exercise.qualname} is {os.path.basename(written_in)}'s, not "
                                              f"yours: write it in this file")
    return None


def finish_rows(rows: list[Component], track_file: TrackFile, track: Track, learner, path: str,
                source: str) -> tuple[list[Component], dict[str, int]]:
    """Ownership, the def line and the phase for every row, in exercise order (rows of the same exercise stay
    together); also {qualname: line of the TODO's raise} for the rows that are TODOs."""
    lines = def_lines(source)
    order = {e.qualname: i for i, e in enumerate(track_file.exercises)}
    rows = sorted(rows, key=lambda r: order.get(r.get("qualname"), len(order)))
    out, replaced, raised_at = [], set(), {}
    for r in rows:
        name = r.get("qualname")
        exercise = next((e for e in track_file.exercises if e.qualname == name), None)
        if exercise is not None and r.get("status") != Status.TODO:
            own = ownership_row(exercise, learner, path)
            if own is not None:
                if name in replaced:
                    continue
                replaced.add(name)
                r = own
        if r.get("status") == Status.TODO and r.get("line"):
            raised_at.setdefault(name, r["line"])
        r["line"] = lines.get(name)
        r["phase"] = track_phase_number(track)
        out.append(r)
    return out, raised_at


def next_todo(rows: list[Component], track_file: TrackFile, path: str, raised_at: dict[str, int]) -> dict | None:
    """The first TODO row in exercise order, as the result's `next_todo` (line: the raise, def_line: the def)."""
    for r in rows:
        if r.get("status") == Status.TODO:
            exercise = next((e for e in track_file.exercises if e.qualname == r["qualname"]), None)
            return {"qualname": r["qualname"], "phase": r.get("phase"), "message": r.get("detail", ""),
                    "file": path, "line": raised_at.get(r["qualname"], r.get("line")), "def_line": r.get("line"),
                    "lesson": exercise.lesson if exercise else r.get("lesson")}
    return None


def result_of(path: str, track: Track, track_file: TrackFile, stage: Stage, rows: list[Component],
              error: dict | None, timings: dict, raised_at: dict | None = None) -> CheckResult:
    lead = lead_component(rows)
    todo = None if error else next_todo(rows, track_file, path, raised_at or {})
    ok = error is None and bool(rows) and all(r.get("status") == Status.PASS for r in rows)
    return {"file": path, "track": str(track), "reference": {"module": track_file.reference_module},
            "ok": ok, "stage": stage, "next_todo": todo,
            "error": error, "components": rows, "lead": lead["qualname"] if lead else None,
            "shapes": [], "losses": [], "timed_out": False, "timings": timings}


def run_check(path: str, track_file: TrackFile, track: Track, on_imported=None) -> CheckResult:
    """Import the learner's file and run the track's probes on it, in this process (`on_imported()` is called
    once the file is imported)."""
    path = os.path.realpath(path)
    timings, start = {}, time.perf_counter()
    reference = importlib.import_module(track_file.reference_module)
    probes = importlib.import_module(track_file.probes_module)
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    t = time.perf_counter()
    try:
        learner = load_learner(path)
    except BaseException as e:  # noqa: BLE001 - whatever the learner's module does on import is its own error
        if isinstance(e, KeyboardInterrupt):
            raise
        timings["import_s"] = time.perf_counter() - t
        rows = not_reached(track_file, track_phase_number(track), def_lines(source), "your file did not import")
        return result_of(path, track, track_file, Stage.IMPORT, rows,
                         learner_error(e, path, "while importing your file"), timings)
    timings["import_s"] = time.perf_counter() - t
    if on_imported is not None:
        on_imported()
    t = time.perf_counter()
    error = None
    try:
        rows = probes.check(learner, reference)
    except BaseException as e:  # noqa: BLE001 - a probe lets the learner's exceptions through only from its code
        if isinstance(e, KeyboardInterrupt):
            raise
        rows, (line, _) = [], learner_line(e, path)
        if line is None and not isinstance(e, (SystemExit, MemoryError)):
            raise  # not the learner's: the workbench's own failure, reported as such by main()
        error = learner_error(e, path, "while its functions were being checked")
        rows = not_reached(track_file, None, {}, f"the check stopped at your {type(e).__name__} first")
    timings["check_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    rows, raised_at = finish_rows(rows, track_file, track, learner, path, source)
    return result_of(path, track, track_file, Stage.DONE, rows, error, timings, raised_at)


def limit_resources(memory_bytes: int | None) -> None:
    """Cap the address space (on top of what torch has mapped already) and the size of any file written."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no caps
        return
    from workbench.check.worker import own_address_space
    base = own_address_space()
    for limit, value in ((resource.RLIMIT_AS, base + memory_bytes if memory_bytes and base else None),
                         (resource.RLIMIT_FSIZE, OUTPUT_FILE_LIMIT)):
        if value is None:
            continue
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file too big: the write fails, the process lives


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workbench.tracks.child")
    parser.add_argument("--dir", required=True, help="the check's folder: result.json, dump.txt, ready go there")
    parser.add_argument("--parent", type=int, required=True, help="the runner's pid: when it dies, so does this")
    parser.add_argument("--memory", type=int, default=None, help="bytes the check may allocate")
    return parser.parse_args(argv)


def warm_up(requests: queue.Queue) -> str | None:
    """Import what every check needs before the learner's file arrives: torch, then — unless the request is here
    already (a one-shot check: its own imports are enough) — torch.optim and torch._dynamo (torch.optim's first
    step imports it: seconds), every track's reference and probes. Returns the workbench's own failure, if any,
    as text (reported when the request comes)."""
    try:
        import torch  # noqa: F401 - before the memory cap: torch's own mappings are not the learner's
        if not requests.empty():
            return None
        import torch._dynamo  # noqa: F401
        import torch.optim  # noqa: F401
        from workbench.tracks.base import available_track_specs
        for spec in available_track_specs():
            for tf in spec.files:
                importlib.import_module(tf.reference_module)
                importlib.import_module(tf.probes_module)
    except Exception as e:  # noqa: BLE001 - the workbench's own failure, said when the check is asked for
        return f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    return None


def gone(folder: str) -> None:
    """The runner died: remove this check's folder and kill this process group (the learner's processes too)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def on_runner_gone(folder: str, signum, frame) -> None:
    gone(folder)


def die_with_runner(parent: int, folder: str) -> None:
    """Linux: the kernel sends SIGTERM when the runner dies, and SIGTERM ends the whole group. (SIGKILL, the
    default, would end this process alone and leave the learner's processes running.) Elsewhere watch_runner
    notices the runner is gone."""
    signal.signal(signal.SIGTERM, functools.partial(on_runner_gone, folder))
    die_with_parent(parent, signal.SIGTERM, on_gone=functools.partial(gone, folder))


def watch_runner(fd: int, parent: int, folder: str, requests: queue.Queue) -> None:
    """Thread: read the request line from the runner's pipe, then keep watching it. EOF on the pipe, or a parent
    that is no longer the runner (re-parented: the runner died), ends the whole process group. The runner's
    SIGUSR1 (a stack sample) is blocked here, so it lands on the thread that runs the learner's code."""
    if hasattr(signal, "pthread_sigmask") and hasattr(signal, "SIGUSR1"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    buffer = b""
    while True:
        readable, _, _ = select.select([fd], [], [], PARENT_POLL_S)
        if not readable:
            if os.getppid() != parent:
                gone(folder)
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            gone(folder)
        buffer += chunk
        if b"\n" in buffer and requests.empty():
            requests.put(json.loads(buffer.split(b"\n", 1)[0]))


def take_stdin() -> int:
    """The runner's pipe moves to a private descriptor; the learner's code reads /dev/null on stdin."""
    fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return fd


def forget_warm_up_output() -> None:
    """Empty the output file (stdout and stderr share it) so only the learner's prints come back."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.ftruncate(1, 0)
        os.lseek(1, 0, os.SEEK_SET)
    except OSError:
        pass


def check_request(request: dict, folder: str, memory: int | None, timings: dict) -> CheckResult | dict:
    """Run the requested check (file, track, reference) under the memory cap."""
    track = Track(request["track"])
    track_file = find_track_file(track, reference_module=request["reference"])
    out = os.path.join(folder, RESULT_NAME)
    importlib.import_module(request["reference"])
    limit_resources(memory)
    result = run_check(request["file"], track_file, track, lambda: open(out + ".imported", "w").close())
    result.setdefault("timings", {}).update(timings)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    dump = open(os.path.join(args.dir, DUMP_NAME), "w")  # noqa: SIM115 - open for the process's life
    faulthandler.enable(file=dump, all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=False)
    die_with_runner(args.parent, args.dir)
    requests: queue.Queue = queue.Queue(maxsize=1)
    threading.Thread(target=watch_runner, args=(take_stdin(), args.parent, args.dir, requests), daemon=True).start()
    failure = warm_up(requests)
    ready_at = time.time()
    with open(os.path.join(args.dir, READY_NAME), "w") as f:
        f.write(str(ready_at))
    request = requests.get()
    forget_warm_up_output()
    timings = {"child_ready_s": max(0.0, ready_at - request["sent"]), "child_pid": os.getpid()}
    try:
        if failure:
            raise RuntimeError(failure)
        result = check_request(request, args.dir, args.memory, timings)
    except Exception as e:  # noqa: BLE001 - the workbench's own failure
        result = {"workbench_error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    out = os.path.join(args.dir, RESULT_NAME)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the learner's atexit hooks and threads are not waited for


if __name__ == "__main__":
    sys.exit(main())

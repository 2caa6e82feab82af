"""The process a track file's check runs in: `python -m workbench.tracks.child --file F --track T --reference M`.

Started by workbench/tracks/runner.py in a session (process group) of its own, with its output going to a file
the runner reads the tail of. It imports torch and the reference module, caps its address space (RLIMIT_AS,
where the OS has it), then imports the learner's file by its path and runs the track's probes:
`probes.check(learner, reference) -> list[Component]`. The result (the `CheckResult` dict of
workbench/check/result.py) is written as JSON to --out; a file that never appears (a timeout, a crash,
`os._exit`) is explained by the runner from the exit status and the faulthandler dump in --dump.

`run_check(path, track_file, track)` is the same check in the calling process (the tests use it on planted bugs).
"""

import argparse
import faulthandler
import importlib
import importlib.util
import inspect
import json
import os
import signal
import sys
import time
import traceback

from workbench.check.result import CheckResult, Component, Stage, Status, lead_component
from workbench.tracks.base import Track, TrackFile, find_track_file
from workbench.tracks.recognise import def_lines
from workbench.course.phases import track_phase_number

OUTPUT_FILE_LIMIT = 64 << 20  # the learner's prints, per file: enough for any honest debugging


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
    line, _ = learner_line(exc, path)
    kind = type(exc).__name__
    if isinstance(exc, SystemExit):
        kind, message = "Exit", f"your code called sys.exit({exc.code!r}) {stage_words}"
    elif isinstance(exc, MemoryError):
        kind, message = "OutOfMemory", f"your code ran out of memory {stage_words}"
    else:
        message = f"{kind}: {exc} ({stage_words})"
    tb = "".join(traceback.format_exception(exc)[-12:])
    return {"type": kind, "message": message, "file": path, "line": line, "qualname": None, "traceback": tb}


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
        return result_of(path, track, track_file, Stage.IMPORT, [], learner_error(e, path, "while importing your file"),
                         timings)
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
    parser.add_argument("--file", required=True)
    parser.add_argument("--track", required=True, choices=[str(t) for t in Track if t is not Track.MODEL])
    parser.add_argument("--reference", required=True, help="the reference module, e.g. nanochat.muon")
    parser.add_argument("--out", required=True, help="where the result JSON goes")
    parser.add_argument("--dump", required=True, help="faulthandler's tracebacks (on a crash, and on SIGUSR1)")
    parser.add_argument("--memory", type=int, default=None, help="bytes the check may allocate")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    dump = open(args.dump, "w")  # noqa: SIM115 - open for the life of the process (faulthandler writes to it)
    faulthandler.enable(file=dump, all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=False)
    track = Track(args.track)
    track_file = find_track_file(track, reference_module=args.reference)
    import torch  # noqa: F401 - before the memory cap: torch's own mappings are not the learner's
    importlib.import_module(args.reference)
    limit_resources(args.memory)
    try:
        result = run_check(args.file, track_file, track, lambda: open(args.out + ".imported", "w").close())
    except Exception as e:  # noqa: BLE001 - the workbench's own failure
        result = {"workbench_error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, args.out)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the learner's atexit hooks and threads are not waited for


if __name__ == "__main__":
    sys.exit(main())

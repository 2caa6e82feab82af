"""The check child without fork(): a warm SPARE process that takes the next check.

The worker (workbench/check/worker.py) forks a child per check on Linux. Where fork() after importing torch is
unsafe or missing (macOS, Windows), it instead keeps one spare ready: a fresh interpreter (a spawn, started with
subprocess so that its process group, file descriptors and stdio are set before it runs any code) that has
imported torch and workbench.check.child and loaded the reference's answers (saved once by the worker with
torch.save). A check is handed to the spare with one JSON line on its stdin; a new spare is started at once.

    strategy = choose_strategy(requested)     # "fork" or "spawn": --child, else NANOCHAT_WORKBENCH_CHILD, else
                                              # fork on Linux, spawn elsewhere
    pool = SparePool(ref, scratch_dir)        # in the worker, after the reference is built
    pid = pool.take(run)                      # the spare's pid; run's pipes and fault file are the spare's

Same isolation as the forked child: its own process group (session) killed as a whole, stdout/stderr into a pipe
the worker keeps the tail of, faulthandler tracebacks into a file (on a crash, on SIGUSR1 for the stall
detector), a memory cap (RLIMIT_AS where the OS has it), a watchdog past the timeout. The spare watches its
parent: it reads its stdin until EOF, and EOF (the worker died or closed it) kills its whole process group.

    python -m workbench.check.spare --ref FILE --fds RESULT,OUT,FAULT     (started by SparePool, never by hand)
"""

import argparse
import faulthandler
import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

CHILD_ENV = "NANOCHAT_WORKBENCH_CHILD"
STRATEGIES = ("fork", "spawn")
SPARE_READY_TIMEOUT = 300.0  # a spare that is not warm by then is a workbench failure


def platform_default() -> str:
    """fork where it is safe after importing torch (Linux), a warm spawned spare elsewhere (macOS, Windows)."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


def choose_strategy(requested: str | None = None) -> str:
    """The child strategy: `requested` (--child), else $NANOCHAT_WORKBENCH_CHILD, else the platform's default.
    Raises ValueError naming the choices for anything else."""
    value = (requested or os.environ.get(CHILD_ENV) or platform_default()).strip().lower()
    if value not in STRATEGIES or (value == "fork" and not hasattr(os, "fork")):
        raise ValueError(f"unknown child strategy {value!r} (choose {' or '.join(STRATEGIES)}"
                         f"{'; this platform has no fork' if not hasattr(os, 'fork') else ''})")
    return value


class Spare:
    """One warming or warm spare: its process and the worker's ends of its pipes."""

    def __init__(self, ref_file: str, scratch: str):
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        self.fault = tempfile.TemporaryFile(dir=scratch)
        fds = (result_w, out_w, self.fault.fileno())
        cmd = [sys.executable, "-m", "workbench.check.spare", "--ref", ref_file, "--fds", ",".join(map(str, fds))]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds,
                                         start_new_session=True)  # its own process group: killed as a whole
        finally:
            os.close(result_w)
            os.close(out_w)
        self.pid = self.proc.pid
        self.result_r, self.out_r = result_r, out_r
        self.warm = False  # its "ready" line has been read

    def wait_ready(self, timeout: float) -> None:
        """Block until the spare says it is warm (its first stdout line); RuntimeError if it died instead."""
        if self.warm:
            return
        line = b""
        if self.proc.stdout is not None:
            import selectors
            with selectors.DefaultSelector() as sel:
                sel.register(self.proc.stdout, selectors.EVENT_READ)
                if sel.select(timeout):
                    line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.discard()
            raise RuntimeError(f"the spare check process did not warm up (exit code {self.proc.poll()})")
        self.warm = True

    def hand(self, request: dict) -> None:
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        self.proc.stdout.close()  # from now on the spare is the check's child; the worker reaps it by pid
        self.proc.returncode = 0  # the worker waits for it with waitpid; Popen must not try again

    def discard(self) -> None:
        """Kill the spare (and anything it started) and close the worker's ends."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (OSError, AttributeError):
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, ChildProcessError):
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.fault):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        for fd in (self.result_r, self.out_r):
            try:
                os.close(fd)
            except OSError:
                pass


class SparePool:
    """Keeps one spare warming or warm; `take` hands it a check and starts the next one."""

    def __init__(self, ref, scratch: str):
        import torch
        self.scratch = scratch
        self.ref_file = os.path.join(scratch, "reference.pt")
        torch.save(ref, self.ref_file)
        self.spare: Spare | None = Spare(self.ref_file, scratch)
        self.taken: list = []  # control pipes of spares handed a check: open while it runs (EOF ends it)

    def pids(self) -> tuple:
        """The spare waiting for a check (a process of the worker's that no sweep may kill)."""
        return (self.spare.pid,) if self.spare is not None else ()

    def take(self, run) -> int:
        """Hand `run` (a worker.Run) to the spare and return its pid; run's pipes and fault file become the
        spare's. Blocks while the spare is still warming up."""
        for control in self.taken:  # the worker stopped every earlier check before starting this one
            control.close()
        spare, self.spare, self.taken = self.spare, None, []
        if spare is None or spare.proc.poll() is not None:
            if spare is not None:
                spare.discard()
            spare = Spare(self.ref_file, self.scratch)
        waited = time.perf_counter()
        spare.wait_ready(SPARE_READY_TIMEOUT)
        run.extra_timings["spare_wait_s"] = round(time.perf_counter() - waited, 4)  # 0: it was warm
        run.fault.close()
        run.fault, run.result_r, run.out_r = spare.fault, spare.result_r, spare.out_r
        spare.hand({"path": run.path, "steps": run.steps, "timeout": run.timeout, "scratch": run.scratch,
                    "token": run.token, "memory_budget": run.memory_budget, "experiments": run.experiments})
        self.taken.append(spare.proc.stdin)
        self.spare = Spare(self.ref_file, self.scratch)  # the next check's, warming while this one runs
        return spare.pid

    def close(self) -> None:
        for control in self.taken:
            control.close()
        if self.spare is not None:
            self.spare.discard()
            self.spare = None
        shutil.rmtree(self.scratch, ignore_errors=True)


# ---- the spare process itself ---------------------------------------------------------------------------------

def watch_parent(control: int, requests: queue.Queue) -> None:
    """Read the control pipe (the spare's stdin, kept on its own descriptor): the first line is the check; EOF
    at any time (the worker is gone) ends the spare's whole process group, the learner's code included."""
    for line in os.fdopen(control, "rb"):
        requests.put(line)
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    os._exit(1)


def enter_check(request: dict, out_fd: int, fault) -> None:
    """Become the check's process: stdin from /dev/null, stdout/stderr into the output pipe, tracebacks into the
    fault file on a crash, the memory cap, a watchdog past the timeout (SIGUSR1/2 are set up by main)."""
    from workbench.check.worker import FloodSafeStream, own_address_space
    faulthandler.dump_traceback_later(float(request["timeout"]) + 10, exit=True, file=fault)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(null)
    os.close(out_fd)
    sys.stdout, sys.stderr = FloodSafeStream(1), FloodSafeStream(2)
    faulthandler.enable(file=fault, all_threads=True)
    budget, base = request.get("memory_budget"), own_address_space()
    if budget and base:
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (base + budget, base + budget))
        except (ImportError, ValueError, OSError):
            pass


def recording_exit(fault, real_exit, status):
    """os._exit for the learner's code (bound with functools.partial): note where it was called (in the fault
    file), flush, then exit."""
    try:
        _flush_all()
        faulthandler.dump_traceback(file=fault, all_threads=False)
    finally:
        real_exit(status)


def _flush_signal(signum, frame) -> None:
    _flush_all()


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="a warm spare check process (started by the check worker)")
    parser.add_argument("--ref", required=True, help="the reference's answers (torch.save of check.reference)")
    parser.add_argument("--fds", required=True, help="RESULT,OUT,FAULT: inherited file descriptors")
    args = parser.parse_args(argv)
    result_fd, out_fd, fault_fd = (int(x) for x in args.fds.split(","))
    fault = os.fdopen(fault_fd, "wb", buffering=0)
    if hasattr(signal, "SIGUSR1"):  # the stall detector's signal must never kill it, even before the check
        faulthandler.register(signal.SIGUSR1, file=fault, all_threads=True, chain=False)
        signal.signal(signal.SIGUSR2, _flush_signal)
    for sig in ("SIGINT", "SIGTERM"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), signal.SIG_DFL)
    status = os.fdopen(os.dup(1), "wb", buffering=0)  # "ready" goes here; stray prints while warming: stderr
    os.dup2(2, 1)
    # The stall detector's signals go to the thread that runs the learner's code: every thread started while
    # warming up (this watcher, torch's pools) inherits them blocked, and only the main thread unblocks them for
    # the check (a stopped check is resumed to dump its stack: it must dump where it stopped, not a moment later).
    stall_signals = {getattr(signal, s) for s in ("SIGUSR1", "SIGUSR2") if hasattr(signal, s)}
    if stall_signals and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, stall_signals)
    requests: queue.Queue = queue.Queue()
    threading.Thread(target=watch_parent, args=(os.dup(0), requests), daemon=True, name="watch-parent").start()

    import torch
    torch.set_num_threads(int(os.environ.get("NANOCHAT_CHECK_THREADS", "1")))
    ref = torch.load(args.ref, weights_only=False)
    with warnings.catch_warnings():  # torch warns about this once per process; the forked child inherits the
        warnings.simplefilter("ignore")  # worker's "already warned" (the reference did it), so does the spare now,
        float(torch.zeros((), requires_grad=True))  # or the checks' own float(loss) would land in the output
    from workbench.check import child
    import workbench.check.judge  # noqa: F401  (the same modules the forked child finds loaded)
    import nanochat.engine  # noqa: F401
    status.write(b"ready\n")
    request = json.loads(requests.get())
    status.close()

    real_exit, code = os._exit, 70
    if stall_signals and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stall_signals)
    try:
        enter_check(request, out_fd, fault)
        os._exit = functools.partial(recording_exit, fault, real_exit)
        channel = child.Channel(result_fd, request["scratch"], request.get("token", ""))
        try:
            child.run(request["path"], ref, channel, int(request["steps"]), request.get("experiments") or ())
            code = 0
        except BaseException as e:  # a bug of ours (the learner's exceptions are caught inside)
            try:
                child.internal_error(channel, e)
            except BaseException:
                pass
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        _flush_all()
        real_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

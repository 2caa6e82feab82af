"""The check child without fork(): a warm SPARE process that takes the next check.

The worker (workbench/check/worker.py) forks a child per check on Linux. Where fork() after importing torch is
unsafe or missing (macOS, Windows), it instead keeps one spare ready: a fresh interpreter (a spawn, started with
subprocess so that its process group, file descriptors and stdio are set before it runs any code) that has
imported torch and workbench.check.child and loaded the reference's answers (saved once by the worker with
torch.save). A check is handed to the spare with one JSON line on its stdin; a new spare is started at once.
While no check runs or waits, the spare is told to warm up: it runs the reference model (written out as a
learner's file) through the whole check once, so that torch's first-call costs (lazy initialisation, kernel
choice, allocator pools, the optimizers' first step) are paid before the learner's check, as they are in the
forked child, whose worker ran the reference before forking. A check that arrives meanwhile stops the warm-up
within moments (the next time it runs our own code); the worker never blocks on a spare: a request waits while
the spare starts, and a newer save replaces the waiting request instead of spending a spare on it.

    strategy = choose_strategy(requested)     # "fork" or "spawn": --child, else NANOCHAT_WORKBENCH_CHILD, else
                                              # fork on Linux, spawn elsewhere
    pool = SparePool(ref, scratch_dir)        # in the worker, after the reference is built
    pool.ready()                              # can the spare take a check now? (pool.idle(): warm up)
    pid = pool.take(run)                      # the spare's pid; run's pipes and fault file are the spare's

Spare -> worker, on its stdout: "ready" (it can take a check), "hot" (the warm-up ran to its end). Worker ->
spare, on its stdin: {"op": "warm"}, then {"op": "check", "path": ..., ...}.

Same isolation as the forked child: its own process group (session) killed as a whole, stdout/stderr into a pipe
the worker keeps the tail of, faulthandler tracebacks into a file (on a crash, on SIGUSR1 for the stall
detector), a memory cap (RLIMIT_AS where the OS has it), a watchdog past the timeout, the worker's random
number generators (a forked child inherits them; the learner's init_weights draws from them), and before it
exits it kills every process its check started. The spare watches its parent: it reads its stdin until EOF, and
EOF (the worker died or closed it) kills its whole process group.

    python -m workbench.check.spare --ref FILE --warm FILE --fds RESULT,OUT,FAULT
                                                        (started by SparePool, never by hand)
"""

import _thread
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
    """One spare process, from its start until it is handed a check: its process and the worker's ends of its
    pipes. It says "ready" once it can take a check and "hot" once it has also run the reference through the
    checks (after the worker's "warm", see `warm`)."""

    def __init__(self, ref_file: str, warm_file: str, scratch: str):
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        self.fault = tempfile.TemporaryFile(dir=scratch)
        fds = (result_w, out_w, self.fault.fileno())
        cmd = [sys.executable, "-m", "workbench.check.spare", "--ref", ref_file, "--warm", warm_file,
               "--fds", ",".join(map(str, fds))]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds,
                                         start_new_session=True)  # its own process group: killed as a whole
        finally:
            os.close(result_w)
            os.close(out_w)
        self.pid = self.proc.pid
        self.result_r, self.out_r = result_r, out_r
        self.status_fd = self.proc.stdout.fileno()  # its "ready" / "hot" lines
        os.set_blocking(self.status_fd, False)
        self.started = time.perf_counter()
        self.ready = self.hot = self.dead = False
        self.warm_sent = False
        self._lines = b""

    def poll(self) -> None:
        """Read what the spare has said so far (never blocks): sets ready / hot, or dead at EOF."""
        while not self.dead:
            try:
                chunk = os.read(self.status_fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.dead = True
                return
            *lines, self._lines = (self._lines + chunk).split(b"\n")
            for line in lines:
                self.ready |= line.strip() in (b"ready", b"hot")
                self.hot |= line.strip() == b"hot"

    def wait_ready(self, timeout: float) -> None:
        """Block until the spare is ready; RuntimeError if it died or did not get there in time."""
        import selectors
        end = time.perf_counter() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.status_fd, selectors.EVENT_READ)
            while not (self.ready or self.dead) and time.perf_counter() < end:
                sel.select(max(0.0, end - time.perf_counter()))
                self.poll()
        if not self.ready:
            self.discard()
            raise RuntimeError(f"the spare check process did not warm up (exit code {self.proc.poll()})")

    def send(self, message: dict) -> bool:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def warm(self) -> None:
        """Ask it (once) to run the reference through the checks, so that torch's first-call costs are paid
        before the learner's check rather than during it; a check handed meanwhile interrupts it."""
        if not self.warm_sent:
            self.warm_sent = self.send({"op": "warm"})

    def hand(self, request: dict) -> None:
        self.send(dict(request, op="check"))
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
    """Keeps one spare starting, ready or hot. The worker asks `ready()` (never blocks; meanwhile it waits on
    `current().status_fd`), hands a check with `take`, which starts the next spare at once (it imports torch
    and loads the reference while the check runs), and calls `idle()` whenever no check runs or waits: that is
    when the spare warms up on the reference, so the warm-up never competes with the learner's check."""

    def __init__(self, ref, scratch: str):
        import torch
        self.scratch = scratch
        self.ref_file = os.path.join(scratch, "reference.pt")
        torch.save(ref, self.ref_file)
        self.warm_file = os.path.join(scratch, "warm", "learner_gpt.py")  # the reference, as a learner's file
        os.makedirs(os.path.dirname(self.warm_file))
        import nanochat.gpt
        shutil.copyfile(nanochat.gpt.__file__, self.warm_file)
        self.died_cold = False  # the last spare exited before it was ready
        self.spare: Spare | None = self._start()
        self.taken: list = []  # control pipes of spares handed a check: open while it runs (EOF ends it)

    def _start(self) -> Spare:
        return Spare(self.ref_file, self.warm_file, self.scratch)

    def pids(self) -> tuple:
        """The spare waiting for a check (a process of the worker's that no sweep may kill)."""
        return (self.spare.pid,) if self.spare is not None else ()

    def current(self) -> Spare:
        """The spare that takes the next check; a dead one is replaced (RuntimeError after a spare died before it
        got ready twice in a row: something is wrong with the installation, not with the learner's file)."""
        spare = self.spare
        if spare is not None:
            spare.poll()
        if spare is None or spare.dead or spare.proc.poll() is not None:
            if spare is not None:
                spare.discard()
                if not spare.ready and self.died_cold:
                    self.spare = None
                    raise RuntimeError(f"the spare check process exited while warming up "
                                       f"(exit code {spare.proc.returncode})")
                self.died_cold = not spare.ready
            spare = self.spare = self._start()
        return spare

    def ready(self) -> bool:
        return self.current().ready

    def idle(self) -> None:
        self.current().warm()

    def take(self, run) -> int:
        """Hand `run` (a worker.Run) to the ready spare and return its pid; run's pipes and fault file become
        the spare's. The next spare starts at once."""
        for control in self.taken:  # the worker stopped every earlier check before starting this one
            control.close()
        spare, self.taken = self.current(), []
        run.extra_timings["spare_hot"] = spare.hot  # False: the check came before the warm-up ended
        run.fault.close()
        run.fault, run.result_r, run.out_r = spare.fault, spare.result_r, spare.out_r
        spare.hand({"path": run.path, "steps": run.steps, "timeout": run.timeout, "scratch": run.scratch,
                    "rng": rng_state(),
                    "token": run.token, "memory_budget": run.memory_budget, "experiments": run.experiments})
        self.taken.append(spare.proc.stdin)
        self.died_cold = False
        self.spare = self._start()
        return spare.pid

    def close(self) -> None:
        for control in self.taken:
            control.close()
        if self.spare is not None:
            self.spare.discard()
            self.spare = None
        shutil.rmtree(self.scratch, ignore_errors=True)


def rng_state() -> dict:
    """This process's random number generators (torch's CPU one and Python's), for a JSON line: the spare starts
    its check from the worker's, as a forked child does (the learner's init_weights draws from them)."""
    import base64
    import random

    import torch
    version, internal, gauss = random.getstate()
    return {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
            "python": [version, list(internal), gauss]}


def set_rng_state(state: dict) -> None:
    import base64
    import random

    import torch
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ---- the spare process itself ---------------------------------------------------------------------------------

def watch_parent(control: int, requests: queue.Queue) -> None:
    """Read the control pipe (the spare's stdin, kept on its own descriptor): the worker's lines ("warm", then
    the check) go to `requests`; EOF at any time (the worker is gone, or it ended the check) ends the spare's
    whole process group, the learner's code included."""
    for line in os.fdopen(control, "rb"):
        requests.put(line)
        while WARMING.is_set():  # the check is here: stop the warm-up (see _stop_in_our_code)
            _thread.interrupt_main(signal.SIGINT)
            time.sleep(0.002)
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


def recording_exit(fault, real_exit, check_pid, status):
    """os._exit for the learner's code, in the check process of either strategy (bound with functools.partial):
    note where it was called (in the fault file), flush, end what the check started, then exit. A process the learner's code forked exits plainly: its
    own children (a daemon's double fork) are the worker's to sweep when the check ends."""
    if os.getpid() != check_pid:
        real_exit(status)
    try:
        flush_output()
        faulthandler.dump_traceback(file=fault, all_threads=False)
        end_descendants()
    finally:
        real_exit(status)


def end_descendants() -> None:
    """Kill every process the check started, while they are still below this one: where the worker is no
    subreaper (not Linux), one whose parent exits first is re-parented to init and out of the worker's reach."""
    try:
        from workbench.check.procs import kill_descendants
        kill_descendants()
    except Exception:
        pass


def flush_output(signum=None, frame=None) -> None:
    """Flush the check's stdout and stderr (also the SIGUSR2 handler: the worker sends it before a kill)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # interrupted in the middle of a write: whatever is buffered stays there
            pass


WARMING = threading.Event()  # set while the main thread warms up: a line from the worker interrupts it


class WarmUpInterrupted(BaseException):
    """Raised in the warm-up when a check arrives, at the entry of one of our own functions."""


def _stop_in_our_code(signum, frame) -> None:
    """The SIGINT handler while warming up, tripped again and again by watch_parent (_thread.interrupt_main)
    once a check has arrived: it stops the warm-up the first time it finds it running a function of nanochat's,
    the workbench's or the reference copy's own, never in the middle of torch's or Python's code (a half-run
    lazy import or registration there could break the check that follows)."""
    if WARMING.is_set() and frame is not None and frame.f_code is not warm_up.__code__ \
            and frame.f_code.co_filename.startswith(OUR_CODE):
        raise WarmUpInterrupted


OUR_CODE: tuple = ()  # folder prefixes of our own code, set by warm_up


def load_reference(ref_file: str):
    """The reference's answers, memory-mapped copy-on-write: loading takes milliseconds (pages come in as the
    check reads them), and what a check changes in its copy stays in its own process."""
    import torch
    return torch.load(ref_file, weights_only=False, mmap=True)


class Discard:
    """The warm-up's channel: what the checks send is dropped (nobody judges the warm-up), tensors unsaved."""

    def send(self, event: dict, tensors: dict | None = None) -> None:
        pass


def warm_up(ref_file: str, warm_file: str, requests: queue.Queue) -> bool:
    """Run the reference (written out as a learner's file) through the whole check once, as the worker did
    before forking: torch's lazy initialisation, kernel selection and first calls are paid here instead of in
    the learner's check. Everything it leaves is put back (RNG states, sys.modules, sys.path, warnings) and it
    works on its own copy of the reference's answers. A check that arrives stops it within moments (the next
    time it runs our own code: see _stop_in_our_code); True when it ran to the end."""
    import random

    import torch

    import nanochat
    import workbench
    from workbench.check import child
    global OUR_CODE
    OUR_CODE = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (nanochat.__file__, workbench.__file__,
                                                                            warm_file))
    rng = (torch.get_rng_state(), random.getstate())
    path = list(sys.path)
    WARMING.set()
    signal.signal(signal.SIGINT, _stop_in_our_code)
    try:
        if not requests.empty():
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx = child.Context(warm_file, load_reference(ref_file), Discard(), 1)
            child.run_pipeline(ctx)  # it catches everything, WarmUpInterrupted too: hence the checks below
            for qualname, fn in child.EXPERIMENTS:
                if not requests.empty():
                    return False
                child.run_experiment(ctx, qualname, fn)
        return requests.empty()
    except WarmUpInterrupted:
        return False
    finally:
        WARMING.clear()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        warm_dir = os.path.dirname(os.path.abspath(warm_file))
        for name, module in list(sys.modules.items()):  # the reference imported as the learner's module
            if os.path.dirname(os.path.abspath(getattr(module, "__file__", None) or "/")) == warm_dir:
                del sys.modules[name]
        sys.path[:] = path
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])


def say(status, line: bytes) -> None:
    """A line to the worker; one it no longer reads (it handed this spare a check meanwhile) is dropped."""
    try:
        status.write(line)
    except OSError:
        pass


def next_check(args, requests: queue.Queue, status) -> dict:
    """Say "ready", then follow the worker's lines until it hands a check: {"op": "warm"} runs the warm-up
    (then "hot"), {"op": "check", ...} is the check."""
    say(status, b"ready\n")
    while True:
        message = json.loads(requests.get())
        if message.get("op") != "warm":
            return message
        if requests.empty():
            try:
                hot = warm_up(args.ref, args.warm, requests)
            except Exception:  # a warm-up that fails costs speed, never a check: say why, stay ready
                import traceback
                traceback.print_exc()
                hot = False
            if hot:
                say(status, b"hot\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="a warm spare check process (started by the check worker)")
    parser.add_argument("--ref", required=True, help="the reference's answers (torch.save of check.reference)")
    parser.add_argument("--warm", required=True, help="the reference model as a learner's file, for the warm-up")
    parser.add_argument("--fds", required=True, help="RESULT,OUT,FAULT: inherited file descriptors")
    args = parser.parse_args(argv)
    result_fd, out_fd, fault_fd = (int(x) for x in args.fds.split(","))
    fault = os.fdopen(fault_fd, "wb", buffering=0)
    if hasattr(signal, "SIGUSR1"):  # the stall detector's signal must never kill it, even before the check
        faulthandler.register(signal.SIGUSR1, file=fault, all_threads=True, chain=False)
        signal.signal(signal.SIGUSR2, flush_output)
    for sig in ("SIGINT", "SIGTERM"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), signal.SIG_DFL)
    status = os.fdopen(os.dup(1), "wb", buffering=0)  # "ready"/"hot" go here; stray prints: stderr
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
    import torch._dynamo  # noqa: F401  (an optimizer's first step imports it: seconds no warm-up could interrupt)
    torch.set_num_threads(int(os.environ.get("NANOCHAT_CHECK_THREADS", "1")))
    ref = load_reference(args.ref)
    with warnings.catch_warnings():  # torch warns about this once per process; the forked child inherits the
        warnings.simplefilter("ignore")  # worker's "already warned" (the reference did it), so does the spare now,
        float(torch.zeros((), requires_grad=True))  # or the checks' own float(loss) would land in the output
    from workbench.check import child  # noqa: F401  (the same modules the forked child finds loaded)
    import workbench.check.judge  # noqa: F401
    import nanochat.engine  # noqa: F401
    request = next_check(args, requests, status)
    try:
        status.close()
    except OSError:
        pass
    return run_check(request, ref, result_fd, out_fd, fault, stall_signals)


def run_check(request: dict, ref, result_fd: int, out_fd: int, fault, stall_signals) -> int:
    """The check itself, in this process, which ends with it."""
    from workbench.check import child
    real_exit, code = os._exit, 70
    if stall_signals and hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stall_signals)
    try:
        enter_check(request, out_fd, fault)
        if request.get("rng"):
            set_rng_state(request["rng"])
        os._exit = functools.partial(recording_exit, fault, real_exit, os.getpid())
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
        flush_output()
        end_descendants()
        real_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

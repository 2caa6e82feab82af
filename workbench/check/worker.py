"""The warm worker: one long-lived process that has torch, the tokenizer, a real batch and the reference's
answers loaded, and forks a fresh child for every check of the learner's file (or, with the spawn strategy,
hands it to a warm spare process: workbench/check/spare.py; a request that finds the spare still starting waits
for it without blocking the worker, and a newer request takes its place).

    python -m workbench.check.worker [--seq 512]

Protocol (JSON lines): the caller (workbench/check/client.py) writes requests to stdin —
`{"op": "run", "id": 1, "path": "...", "steps": 2, "timeout": 60, "memory_gb": null, "experiments": []}`, `{"op": "cancel", "id": 1}`,
`{"op": "quit"}` — and reads events from stdout: `{"event": "ready", ...}` once warm, then per run
`{"event": "started", "id": 1, "pid": ...}` and `{"event": "result", "id": 1, "result": {...}}` or
`{"event": "cancelled", "id": 1}`; `{"event": "fatal", ...}`
if warming up failed. While warming up: `{"event": "progress", "done": 1, "total": 4, "stage": "..."}`.

Isolation, per run: nothing the check starts outlives it (the worker is a child subreaper, and after each
check every process below it is killed: workbench/check/procs.py); the child gets its own process group, a memory cap (RLIMIT_AS: the
worker's own size plus a budget, default half the RAM), stdout/stderr redirected into a pipe whose tail the
worker keeps, faulthandler writing Python tracebacks into a file on a crash or on SIGUSR1. A newer run request kills the child in flight.
At the timeout the worker asks the child for its traceback (SIGUSR1), then kills the whole group. The learner's
code runs only in the child; the worker only reads what the child sends (workbench/check/judge.py judges it).
"""

import argparse
import faulthandler
import functools
import io
import json
import os
import resource
import selectors
import shutil
import secrets
import signal
import sys
import tempfile
import time
import traceback

from workbench.check.procs import become_subreaper, die_with_parent, kill_descendants, process_state
from workbench.check.spare import (CHILD_ENV, SPARE_READY_TIMEOUT, STRATEGIES, choose_strategy, flush_output,
                                  platform_default, recording_exit)

STDOUT_KEEP = 64 * 1024  # bytes of the learner's output kept (the tail)
END_GRACE_S = 2.0  # after the last event, how long the child may take to exit before it is killed
DUMP_WAIT_S = 0.5  # how long to wait for the child's traceback after SIGUSR1
STALL_QUIET_S = 5.0  # no event from the child for this long: sample its stack (every stage sends events often)
STALL_EVERY_S = 1.0  # between stack samples
STALL_SAMPLES = 3  # this many samples in a row in the same place of the learner's code: stuck


def default_memory_budget() -> int:
    """Half the physical RAM: what a check may allocate on top of the worker's own footprint."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def own_address_space() -> int:
    """This process's virtual size (torch maps a lot it never touches); the child's cap is this plus the budget.
    From /proc, else from `ps` (0 if neither answers: then there is no cap)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        from workbench.check.procs import virtual_size
        return virtual_size(os.getpid())


SCRATCH_PREFIX = "nanochat-check-"


def scratch_root() -> str | None:
    """Where runs keep their tensors: RAM-backed /dev/shm when there is one, else the temp dir."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def remove_stale_scratch() -> None:
    """Scratch directories left by workers that were killed (named after the worker's pid)."""
    root = scratch_root() or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(SCRATCH_PREFIX):
            continue
        pid = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except OSError:
            pass


class FloodSafeStream:
    """stdout/stderr for the learner's code: line-buffered, so nothing printed is lost if the code then crashes,
    until it has printed `switch_after` lines; then block-buffered, so a flood of prints stays fast."""

    def __init__(self, fd: int, switch_after: int = 20000):
        raw = io.BufferedWriter(io.FileIO(fd, "w", closefd=False), 1 << 16)
        self._stream = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)
        self._left = switch_after

    def write(self, text):
        if self._left:
            self._left -= 1
            if not self._left:
                self._stream.reconfigure(line_buffering=False)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Run:
    """One check in flight: the child, its pipes, and what came back so far."""

    def __init__(self, request: dict):
        self.id = request["id"]
        self.path = os.path.abspath(request["path"])
        self.steps = int(request.get("steps") or 1)
        self.experiments = [str(q) for q in request.get("experiments") or []]  # `check --experiment QUALNAME`
        self.timeout = float(request.get("timeout") or 60.0)
        gb = request.get("memory_gb")
        self.memory_budget = int(float(gb) * (1 << 30)) if gb else default_memory_budget()
        self.received = time.perf_counter()
        self.deadline = self.received + self.timeout
        self.pid = None
        self.events: list[dict] = []
        self.buf = b""
        self.out_tail = bytearray()
        self.out_bytes = 0
        self.out_lines = 0
        self.result_eof = False
        self.out_eof = False
        self.ended_at = None  # when the "end" event arrived
        self.last_event_at = self.received  # when the child last sent anything (progress)
        self.stack_samples: list[tuple] = []  # while it sends nothing: where its stack was, newest last
        self.next_sample = 0.0
        self.stall_dump = ""  # the stack sample that showed it stuck
        self.status = None  # waitpid status once reaped
        self.kill_reason = None  # "timeout" | "cancel"
        self.token = secrets.token_hex(16)  # marks the check's own events (workbench/check/verify.py)
        self.scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch_root())
        self.fault = tempfile.TemporaryFile(dir=self.scratch)
        self.result_r = self.result_w = self.out_r = self.out_w = None
        self.extra_timings: dict = {}  # the spawn strategy's spare_wait_s (workbench/check/spare.py)

    def take_output(self, chunk: bytes) -> None:
        self.out_bytes += len(chunk)
        self.out_lines += chunk.count(b"\n")
        self.out_tail += chunk
        if len(self.out_tail) > 2 * STDOUT_KEEP:
            del self.out_tail[:-STDOUT_KEEP]

    def take_events(self, chunk: bytes) -> None:
        if self.kill_reason == "stopped":
            return  # it ran on only because the worker resumed it to take its stack: that does not count
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        if lines:
            self.last_event_at, self.stack_samples = time.perf_counter(), []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("kind") == "end" and self.ended_at is None:
                self.ended_at = time.perf_counter()


def learner_frames(dump: str, path: str) -> tuple:
    """The frames of a faulthandler dump's current thread from the innermost one in the learner's file outwards
    ((file, line, function) each); () when the learner's file is not on the stack."""
    import re
    current = dump.split("\nThread 0x")[0]
    frames = re.findall(r'File "(.+?)", line (\d+) in (\S+)', current)
    for i, (file, _, _) in enumerate(frames):
        if os.path.abspath(file) == path:
            return tuple(frames[i:])
    return ()


class Worker:
    def __init__(self, ref, proto_out, seq_len: int):
        self.ref = ref
        self.proto = proto_out
        self.seq_len = seq_len
        self.sel = selectors.DefaultSelector()
        self.run: Run | None = None
        self.inbuf = b""
        self.base_as = own_address_space()
        self.pid = os.getpid()
        self.strategy = "fork"  # or "spawn": checks run in warm spares (workbench/check/spare.py)
        self.spares = None  # the SparePool when the strategy is "spawn"
        self.pending: dict | None = None  # spawn: the run request waiting for the spare to be ready
        self.watched = None  # the spare whose status pipe is in the selector while a request waits for it

    def send(self, event: dict) -> None:
        self.proto.write(json.dumps(event) + "\n")
        self.proto.flush()

    # ---- the loop ---------------------------------------------------------------------------------------------

    def serve(self) -> None:
        self.sel.register(0, selectors.EVENT_READ, "stdin")
        while True:
            timeout = None
            if self.run is not None:
                timeout = max(0.0, min(self.run.deadline - time.perf_counter(), 0.25))
                if self.run.ended_at is not None:
                    timeout = min(timeout, 0.005)  # the child is exiting: reap it soon (no busy loop)
            elif self.pending is not None:
                timeout = 0.25  # a spare that dies without a word is noticed too
            for key, _ in self.sel.select(timeout):
                if key.data == "stdin":
                    if not self.read_requests():
                        self.stop_run("cancel")
                        self.drop_pending()
                        return
                elif self.run is not None and key.data == ("result", self.run.id):
                    self.read_pipe(key.fd, self.run.take_events, "result_eof")
                elif self.run is not None and key.data == ("out", self.run.id):
                    self.read_pipe(key.fd, self.run.take_output, "out_eof")
            if self.run is not None:
                self.supervise()
            if self.spares is not None:
                self.tend_spares()

    def tend_spares(self) -> None:
        """spawn: hand the waiting request to the spare once it is ready; with nothing to do, let it warm up."""
        try:
            if self.pending is not None and self.spares.ready():
                request, self.pending = self.pending, None
                self.watch_spare(None)
                self.start(request)
            elif self.pending is not None:
                self.watch_spare(self.spares.current())
                if time.perf_counter() - self.pending["arrived"] > SPARE_READY_TIMEOUT:
                    raise RuntimeError(f"no spare check process got ready within {SPARE_READY_TIMEOUT:g} s")
            elif self.run is None:
                self.spares.idle()
        except RuntimeError as e:  # spares that cannot start: the workbench's failure, said in the result
            request, self.pending = self.pending, None
            self.watch_spare(None)
            if request is not None:
                from workbench.check.result import failed_result
                self.send({"event": "result", "id": request["id"], "result": failed_result(
                    os.path.abspath(request["path"]), f"{e}; this is a workbench bug")})

    def watch_spare(self, spare) -> None:
        """Keep the selector on `spare`'s status pipe while a request waits for it; None: on no spare."""
        if spare is self.watched:
            return
        if self.watched is not None:
            try:
                self.sel.unregister(self.watched.status_fd)
            except (KeyError, ValueError, OSError):
                pass
        self.watched = spare
        if spare is not None:
            self.sel.register(spare.status_fd, selectors.EVENT_READ, "spare")

    def request_check(self, request: dict) -> None:
        """Start the check now (fork, or a ready spare), else let it wait for the spare, in the place of any
        request that was already waiting (cancelled: no spare is spent on a save that a newer one replaced)."""
        request["arrived"] = time.perf_counter()
        self.drop_pending()
        if self.spares is None:
            self.start(request)
        else:
            self.pending = request
            self.tend_spares()

    def drop_pending(self, run_id=None) -> None:
        """Cancel the request waiting for a spare (only if it is `run_id`, when given)."""
        if self.pending is not None and run_id in (None, self.pending["id"]):
            request, self.pending = self.pending, None
            self.watch_spare(None)
            self.send({"event": "cancelled", "id": request["id"]})

    def read_requests(self) -> bool:
        data = os.read(0, 65536)
        if not data:
            return False  # the caller went away
        self.inbuf += data
        *lines, self.inbuf = self.inbuf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                continue
            op = request.get("op")
            if op == "quit":
                self.stop_run("cancel")
                self.drop_pending()
                return False
            if op == "cancel":
                if self.run is not None and request.get("id") in (None, self.run.id):
                    self.stop_run("cancel")
                self.drop_pending(request.get("id"))
            elif op == "run":
                self.stop_run("cancel")  # a newer request replaces the one in flight
                self.request_check(request)
        return True

    def read_pipe(self, fd, sink, eof_flag) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if chunk:
            sink(chunk)
        else:
            self.sel.unregister(fd)
            setattr(self.run, eof_flag, True)

    def supervise(self) -> None:
        run = self.run
        now = time.perf_counter()
        if run.status is None:
            pid, status = os.waitpid(run.pid, os.WNOHANG)
            if pid:
                run.status = status
        # once the child is reaped we are done, even if a grandchild still holds a pipe (finish() drains it)
        finished = run.status is not None
        if run.ended_at is not None and run.status is None and now - run.ended_at > END_GRACE_S:
            self.kill_group(run)
            finished = True
        if not finished and now >= run.deadline:
            run.kill_reason = "timeout"
            self.request_traceback(run)
            self.kill_group(run)
            finished = True
        if not finished and self.stuck(run, now):
            self.kill_group(run)
            finished = True
        if finished:
            self.finish(run)

    # ---- child lifecycle -------------------------------------------------------------------------------------

    def start(self, request: dict) -> None:
        run = Run(request)
        pid = run.pid = self.spares.take(run) if self.spares is not None else self.fork_child(run)
        run.last_event_at = time.perf_counter()  # the clocks start now: waiting for a warming spare is not
        run.deadline = run.last_event_at + run.timeout  # the learner's code's time
        if self.spares is not None:
            run.extra_timings["spare_wait_s"] = round(run.last_event_at - request["arrived"], 4)  # 0: was ready
            run.received = request["arrived"]
        os.set_blocking(run.result_r, False)
        os.set_blocking(run.out_r, False)
        self.sel.register(run.result_r, selectors.EVENT_READ, ("result", run.id))
        self.sel.register(run.out_r, selectors.EVENT_READ, ("out", run.id))
        self.run = run
        self.send({"event": "started", "id": run.id, "pid": pid})

    def fork_child(self, run: Run) -> int:
        run.result_r, run.result_w = os.pipe()
        run.out_r, run.out_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.child(run)  # never returns
        try:
            os.setpgid(pid, pid)  # also done in the child; whichever runs first
        except OSError:
            pass
        os.close(run.result_w)
        os.close(run.out_w)
        return pid

    def child(self, run: Run) -> None:
        code = 70
        real_exit = os._exit
        try:
            die_with_parent(self.pid)
            # the worker enforces the timeout; this watchdog (a C thread) covers the case where the worker is gone
            faulthandler.dump_traceback_later(run.timeout + 10, exit=True, file=run.fault)
            os.setpgid(0, 0)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(run.out_w, 1)
            os.dup2(run.out_w, 2)
            for fd in (null, run.out_w, run.out_r, run.result_r, self.proto.fileno()):
                try:
                    os.close(fd)
                except OSError:
                    pass
            sys.stdin = open(os.devnull)
            sys.stdout, sys.stderr = FloodSafeStream(1), FloodSafeStream(2)
            faulthandler.enable(file=run.fault, all_threads=True)
            faulthandler.register(signal.SIGUSR1, file=run.fault, all_threads=True, chain=False)
            signal.signal(signal.SIGUSR2, flush_output)  # sent at the timeout, before the kill
            os._exit = functools.partial(recording_exit, run.fault, real_exit, os.getpid())
            if run.memory_budget and self.base_as:
                limit = self.base_as + run.memory_budget
                try:
                    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                except (ValueError, OSError):
                    pass
            import torch
            torch.set_num_threads(int(os.environ.get("NANOCHAT_CHECK_THREADS", "1")))
            from workbench.check import child
            channel = child.Channel(run.result_w, run.scratch, run.token)
            try:
                child.run(run.path, self.ref, channel, run.steps, run.experiments)
                code = 0
            except BaseException as e:  # a bug of ours (the learner's exceptions are caught inside)
                try:
                    child.internal_error(channel, e)
                except BaseException:
                    pass
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                pass
            real_exit(code)

    def spare_pids(self) -> tuple:
        return self.spares.pids() if self.spares is not None else ()

    def request_traceback(self, run: Run) -> None:
        """Ask the child where it is (SIGUSR1: faulthandler's dump) and to flush its prints (SIGUSR2), then give
        it a moment, reading its output meanwhile so a full pipe can't block the flush."""
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            try:
                os.kill(run.pid, sig)
            except OSError:
                return
        end = time.perf_counter() + DUMP_WAIT_S
        dumped_at = None
        while time.perf_counter() < end:
            try:
                while True:
                    chunk = os.read(run.out_r, 1 << 16)
                    if not chunk:
                        break
                    run.take_output(chunk)
            except (BlockingIOError, OSError):
                pass
            try:
                if dumped_at is None and os.fstat(run.fault.fileno()).st_size > 0:
                    dumped_at = time.perf_counter()
            except OSError:
                return
            if dumped_at is not None and time.perf_counter() - dumped_at > 0.1:
                return
            time.sleep(0.01)

    def stuck(self, run: Run, now: float) -> bool:
        """While the child sends nothing for STALL_QUIET_S, sample its stack every STALL_EVERY_S; it is stuck
        (kill_reason "stall") when STALL_SAMPLES samples in a row find the same frames in the learner's file, or
        stopped (kill_reason "stopped") when it sits in the stopped state (SIGSTOP). Slow work that progresses
        keeps sending events, or moves between samples, and runs on to the overall timeout."""
        if run.ended_at is not None or now - run.last_event_at < STALL_QUIET_S or now < run.next_sample:
            return False
        run.next_sample = now + STALL_EVERY_S
        stopped = process_state(run.pid) == "T"
        text = self.sample_stack(run, resume=stopped)
        if stopped:
            run.kill_reason, run.stall_dump = "stopped", text
            return True
        where = learner_frames(text, run.path)
        run.stack_samples = (run.stack_samples + [where])[-STALL_SAMPLES:] if where else []
        if len(run.stack_samples) == STALL_SAMPLES and len(set(run.stack_samples)) == 1:
            run.kill_reason, run.stall_dump = "stall", text
            return True
        return False

    def sample_stack(self, run: Run, resume: bool = False) -> str:
        """The child's Python stack now (faulthandler's dump on SIGUSR1), taken out of the fault file again so
        that a crash later is not read as happening here. `resume`: SIGCONT it too (stopped, it can't dump)."""
        fd = run.fault.fileno()
        try:
            start = os.fstat(fd).st_size
            os.kill(run.pid, signal.SIGUSR1)
            if resume:
                os.kill(run.pid, signal.SIGCONT)
        except OSError:
            return ""
        size, end = start, time.perf_counter() + DUMP_WAIT_S
        while time.perf_counter() < end:
            time.sleep(0.02)
            grown = os.fstat(fd).st_size
            if grown == size > start:
                break  # written and settled
            size = grown
        text = os.pread(fd, size - start, start).decode("utf-8", "replace") if size > start else ""
        os.ftruncate(fd, start)
        os.lseek(fd, start, os.SEEK_SET)  # the child's file offset too: the file description is shared
        return text

    def kill_group(self, run: Run) -> None:
        for target in (lambda: os.killpg(run.pid, signal.SIGKILL), lambda: os.kill(run.pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass
        if run.status is None:
            try:
                _, run.status = os.waitpid(run.pid, 0)
            except ChildProcessError:
                run.status = 0

    def stop_run(self, reason: str) -> None:
        run = self.run
        if run is None:
            return
        run.kill_reason = reason
        self.kill_group(run)
        kill_descendants(self.spare_pids())
        self.cleanup(run)
        self.send({"event": "cancelled", "id": run.id})

    def cleanup(self, run: Run) -> None:
        for fd in (run.result_r, run.out_r):
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            run.fault.close()
        except OSError:
            pass
        shutil.rmtree(run.scratch, ignore_errors=True)
        self.run = None

    def finish(self, run: Run) -> None:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # stray grandchildren of the learner's code
        except OSError:
            pass
        kill_descendants(self.spare_pids())  # and the ones that left the group (their own session, a double fork)
        for fd, sink, flag in ((run.result_r, run.take_events, "result_eof"), (run.out_r, run.take_output, "out_eof")):
            end = time.perf_counter() + 0.2
            while not getattr(run, flag) and time.perf_counter() < end:
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    time.sleep(0.005)
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                sink(chunk)
        try:
            run.fault.seek(0)
            fault_text = run.stall_dump or run.fault.read().decode("utf-8", "replace")
        except OSError:
            fault_text = ""
        child_s = time.perf_counter() - run.received
        from workbench.check.judge import build_result
        from workbench.check.result import failed_result
        try:
            result = build_result(self.ref, run.path, run.events, steps=run.steps, status=run.status,
                                  kill_reason=run.kill_reason, timeout=run.timeout, fault_text=fault_text,
                                  output=bytes(run.out_tail), output_bytes=run.out_bytes, output_lines=run.out_lines,
                                  memory_limit=run.memory_budget, token=run.token, experiments=run.experiments)
        except Exception as e:
            result = failed_result(run.path, f"the workbench failed to read the check's results "
                                             f"({type(e).__name__}: {e}); this is a workbench bug",
                                   traceback.format_exc())
        total = time.perf_counter() - run.received
        result.setdefault("timings", {}).update(total_s=round(total, 4), child_s=round(child_s, 4),
                                                judge_s=round(total - child_s, 4), warm=True,
                                                child=self.strategy, **run.extra_timings)
        self.cleanup(run)
        self.send({"event": "result", "id": run.id, "result": result})


WARMUP_STAGES = 4  # importing torch, corpus + tokenizer, the reference's answers, the checks


def start_spares(ref, strategy: str):
    """The spawn strategy's pool, its first spare warm (a check never waits for one it could have had)."""
    if strategy != "spawn":
        return None
    from workbench.check.spare import SparePool
    pool = SparePool(ref, tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-spares-", dir=scratch_root()))
    pool.current().wait_ready(SPARE_READY_TIMEOUT)
    pool.idle()  # it warms up on the reference until the first check comes
    return pool


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="the workbench's warm check worker (started by workbench.check.client)")
    parser.add_argument("--seq", type=int, default=512, help="sequence length of the check's batch")
    parser.add_argument("--child", choices=STRATEGIES, default=None,
                        help=f"fork a child per check, or hand it to a warm spawned spare (default: "
                             f"${CHILD_ENV}, else {platform_default()} on this platform)")
    args = parser.parse_args(argv)
    try:
        strategy = choose_strategy(args.child)
    except ValueError as e:
        parser.error(f"${CHILD_ENV}: {e}")

    # the protocol gets a private copy of stdout; anything else printed to fd 1 lands on stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when the worker stops (stdin EOF / quit)
    started = time.perf_counter()

    def progress(done: int, stage: str) -> None:
        proto.write(json.dumps({"event": "progress", "done": done, "total": WARMUP_STAGES, "stage": stage}) + "\n")
        proto.flush()

    try:
        progress(0, "importing torch")
        import torch
        torch.set_num_threads(1)  # no OpenMP thread team before fork(): a child using one would hang
        from workbench.check.reference import build_reference
        progress(1, "loading the corpus and tokenizer (built once, on the first run)")
        ref = build_reference(args.seq, data_loaded=lambda: progress(2, "computing the reference's answers"))
        progress(3, "loading the checks")
        import workbench.check.child  # noqa: F401  (imported before the first fork, not in every child)
        import torch._dynamo  # noqa: F401  (an optimizer's first step imports it: seconds, once, not per check)
        import workbench.check.judge  # noqa: F401
        import nanochat.engine  # noqa: F401
        spares = start_spares(ref, strategy)
    except BaseException as e:
        proto.write(json.dumps({"event": "fatal", "message": f"{type(e).__name__}: {e}",
                                "traceback": traceback.format_exc()}) + "\n")
        proto.flush()
        return 1
    remove_stale_scratch()
    become_subreaper()
    worker = Worker(ref, proto, args.seq)
    worker.strategy, worker.spares = strategy, spares
    worker.send({"event": "ready", "pid": os.getpid(), "warmup_s": round(time.perf_counter() - started, 3),
                 "reference_s": round(ref.timings.get("total_s", 0.0), 3), "seq_len": args.seq,
                 "vocab_size": ref.vocab_size, "tokenizer": ref.tokenizer_name, "child": strategy})
    try:
        worker.serve()
    except BrokenPipeError:
        pass
    finally:
        if spares is not None:
            spares.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

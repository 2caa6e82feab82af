"""Run checks of a learner's file from any program (the CLI, the TUI) without ever running its code in-process.

    runner = Runner()                      # starts the warm worker in the background
    result = await runner.run(path)        # from asyncio (the TUI); a newer run cancels the one in flight
    result = runner.run_sync(path)         # blocking (the CLI)
    runner.cancel(); runner.close()

    result = check_file(path, steps=10)    # one-shot: start a worker, check, stop it

`result` is the dict that `nanochat-workbench check --json` prints. The worker (`python -m workbench.check.worker`)
is a subprocess in its own session; it forks a child per check (workbench/check/worker.py), so whatever the
learner's code does — loop forever, segfault, exit, eat memory, print a million lines — the caller survives and
gets a result saying what happened. If the worker itself dies, the pending run fails with `RunnerError` and
the next run starts a new worker. This module imports nothing heavy (no torch): the TUI stays light.
"""

import asyncio
import collections
import concurrent.futures
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from workbench.check.worker import WARMUP_STAGES

DEFAULT_STEPS = 1  # warm path: one optimizer step (the loss is measured before and after it)
DEFAULT_TIMEOUT = 60.0
DEFAULT_SEQ = 512
WARMUP_TIMEOUT = 600.0  # first use may train the embedded tokenizer


class RunnerError(RuntimeError):
    """The workbench's checker could not run (not a problem in the learner's code); the message says why."""


class CheckCancelled(Exception):
    """The run was cancelled: by `cancel()`, or replaced by a newer `run()`."""


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Runner:
    def __init__(self, *, seq_len: int = DEFAULT_SEQ, steps: int = DEFAULT_STEPS, timeout: float = DEFAULT_TIMEOUT,
                 memory_gb: float | None = None, python: str | None = None, env: dict | None = None,
                 start: bool = True, on_progress: Callable[[dict | None], None] | None = None,
                 child: str | None = None):
        self.child = child  # "fork" | "spawn" | None: the worker's default (workbench/check/spare.py)
        self.seq_len, self.steps, self.timeout, self.memory_gb = seq_len, steps, timeout, memory_gb
        self.python = python or sys.executable
        self.env = env
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._ids = itertools.count(1)
        self._ready = threading.Event()
        self._fatal: str | None = None
        self._stderr_tail: collections.deque = collections.deque(maxlen=60)
        self.info: dict = {}  # the worker's "ready" event: warmup_s, vocab_size, ...
        self.warmup_progress: dict | None = None  # while warming up: {"done", "total", "stage"}
        self.on_progress = on_progress  # called (from a reader thread) with each warmup_progress, None once warm
        self.running: dict | None = None  # {"id", "pid"} of the check process in flight
        self.started_at: float | None = None
        if start:
            self.start()

    # ---- the worker process -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker if it is not running (it warms up in the background)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            env = dict(os.environ if self.env is None else self.env)
            root = _repo_root()
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            self._ready.clear()
            self._fatal = None
            self.info = {}
            self._progress({"done": 0, "total": WARMUP_STAGES, "stage": "starting the check worker"})
            self.started_at = time.perf_counter()
            try:
                self._proc = subprocess.Popen(
                    [self.python, "-m", "workbench.check.worker", "--seq", str(self.seq_len),
                     *(["--child", self.child] if self.child else [])],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                    start_new_session=True,  # Ctrl-C in the terminal is the caller's to handle, not the worker's
                )
            except OSError as e:
                raise RunnerError(f"could not start the check worker ({self.python} -m workbench.check.worker): "
                                  f"{e}") from e
            proc = self._proc
            threading.Thread(target=self._read_events, args=(proc,), daemon=True, name="workbench-runner").start()
            threading.Thread(target=self._read_stderr, args=(proc,), daemon=True, name="workbench-stderr").start()

    def _read_events(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "progress":
                self._progress({k: event[k] for k in ("done", "total", "stage")})
            elif kind == "ready":
                self.info = event
                self._progress(None)
                self._ready.set()
            elif kind == "fatal":
                self._fatal = event.get("message", "unknown error")
                self._stderr_tail.extend((event.get("traceback") or "").splitlines()[-20:])
                self._ready.set()
            elif kind == "started":
                self.running = {"id": event.get("id"), "pid": event.get("pid")}
            elif kind in ("result", "cancelled"):
                if self.running and self.running.get("id") == event.get("id"):
                    self.running = None
                with self._lock:
                    fut = self._pending.pop(event.get("id"), None)
                if fut is not None and not fut.done():
                    if kind == "result":
                        fut.set_result(event["result"])
                    else:
                        fut.set_exception(CheckCancelled("cancelled by a newer check"))
        proc.wait()
        self._progress(None)
        with self._lock:
            pending, self._pending = self._pending, {}
            if self._proc is proc:
                self._proc = None
        why = self._fatal or f"the check worker exited with code {proc.returncode}"
        tail = "\n".join(self._stderr_tail)
        error = RunnerError(f"{why}" + (f"\n--- worker output ---\n{tail}" if tail else ""))
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._ready.set()

    def _progress(self, progress: dict | None) -> None:
        if progress == self.warmup_progress:
            return
        self.warmup_progress = progress
        if self.on_progress is not None:
            self.on_progress(progress)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        for raw in proc.stderr:
            self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def _send(self, message: dict) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise RunnerError("the check worker is not running")
            try:
                proc.stdin.write((json.dumps(message) + "\n").encode())
                proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise RunnerError(f"the check worker is gone ({e})") from e

    @property
    def warm(self) -> bool:
        return self._ready.is_set() and self._fatal is None and self._proc is not None

    def wait_ready(self, timeout: float = WARMUP_TIMEOUT) -> dict:
        """Block until the worker is warm; raise RunnerError if it could not warm up."""
        self.start()
        if not self._ready.wait(timeout):
            raise RunnerError(f"the check worker did not warm up within {timeout:g} s")
        if self._fatal:
            tail = "\n".join(self._stderr_tail)
            raise RunnerError(f"the check worker could not start: {self._fatal}" + (f"\n{tail}" if tail else ""))
        return self.info

    # ---- runs -------------------------------------------------------------------------------------------------

    def submit(self, path, *, steps: int | None = None, timeout: float | None = None,
               memory_gb: float | None = None, experiments=()) -> tuple[int, concurrent.futures.Future]:
        """Queue a check; returns (id, future). A run already in flight is cancelled by the worker.
        `experiments`: qualnames checked as experiments besides those marked in the file."""
        self.start()
        if self._fatal:
            self.wait_ready(0)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            run_id = next(self._ids)
            self._pending[run_id] = fut
            self._send({"op": "run", "id": run_id, "path": os.path.abspath(os.fspath(path)),
                        "steps": steps or self.steps, "timeout": timeout or self.timeout,
                        "memory_gb": memory_gb if memory_gb is not None else self.memory_gb,
                        "experiments": list(experiments)})
        return run_id, fut

    async def run(self, path, **kw) -> dict:
        """Check `path` and return the result dict. Cancelling the awaiting task kills the check in flight."""
        run_id, fut = self.submit(path, **kw)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            self._cancel_id(run_id)
            raise

    def run_sync(self, path, **kw) -> dict:
        """Check `path`, blocking until the result (Ctrl-C cancels the check and re-raises)."""
        run_id, fut = self.submit(path, **kw)
        try:
            return fut.result()
        except KeyboardInterrupt:
            self._cancel_id(run_id)
            raise

    def _cancel_id(self, run_id: int) -> None:
        with self._lock:
            fut = self._pending.pop(run_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(CheckCancelled("cancelled"))
        try:
            self._send({"op": "cancel", "id": run_id})
        except RunnerError:
            pass

    def cancel(self) -> None:
        """Cancel every check in flight; their `run()` calls raise CheckCancelled."""
        with self._lock:
            ids = list(self._pending)
        for run_id in ids:
            self._cancel_id(run_id)

    def close(self) -> None:
        """Stop the worker (and any check it is running)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.write(b'{"op": "quit"}\n')
            proc.stdin.flush()
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
        except Exception:
            pass


def check_file(path, *, steps: int = DEFAULT_STEPS, timeout: float = DEFAULT_TIMEOUT, seq_len: int = DEFAULT_SEQ,
               memory_gb: float | None = None, child: str | None = None, experiments=()) -> dict:
    """One check, one-shot: start a worker, run, stop it. The CLI uses this."""
    with Runner(seq_len=seq_len, steps=steps, timeout=timeout, memory_gb=memory_gb, child=child) as runner:
        runner.wait_ready()
        return runner.run_sync(path, experiments=experiments)

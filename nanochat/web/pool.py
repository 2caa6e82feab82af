"""The workers that generate, the bounded queue in front of them, and one request's generation.

Each `Worker` owns an Engine (one per GPU; on a CPU, N workers share one model, each with its own Engine and
KV caches). A request first takes a `Ticket` (synchronously, so a full queue is known before any byte of the
response is sent: `QueueFull` -> 503), then waits for a free worker, then runs `generate` in a thread of its own
while the event loop streams what that thread posts. Setting `Job.stop` (the client went away) ends the
generation after the current token; whatever happens, the thread hands the worker back and logs one line.
"""

import asyncio
import enum
import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable

from nanochat.web.schema import Sampling
from nanochat.web.stream import TextStream

if TYPE_CHECKING:  # torch stays out of the app's import; the workers are built by nanochat/web/load.py
    from nanochat.engine import Engine
    from nanochat.tokenizer import RustBPETokenizer

log = logging.getLogger("nanochat.web")


@dataclass
class Worker:
    index: int  # the "gpu" number in the event stream
    device: str
    engine: "Engine"
    tokenizer: "RustBPETokenizer"
    autocast: Callable[[], AbstractContextManager]
    busy: bool = False

    def stop_tokens(self) -> set[int]:
        return {self.tokenizer.encode_special("<|assistant_end|>"), self.tokenizer.get_bos_token_id()}


class QueueFull(Exception):
    """Every worker is busy and the wait queue is at its limit."""


class NotReady(Exception):
    """The model is still loading (or failed to load)."""


class Outcome(str, enum.Enum):
    DONE = "done"  # the model ended its answer
    LENGTH = "length"  # max_tokens or the model's context reached
    STOPPED = "stopped"  # the client went away
    ERROR = "error"


@dataclass(frozen=True)
class Finished:
    """The last thing a generation thread posts."""
    outcome: Outcome
    tokens: int
    seconds: float
    error: str | None = None


@dataclass
class Job:
    request_id: int
    prompt: list[int]
    sampling: Sampling
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class Ticket:
    """A place in the wait queue, held from admission until a worker is taken or the request ends."""
    pool: "WorkerPool"
    waiting: bool = True

    def leave(self):
        if self.waiting:
            self.waiting = False
            self.pool.waiting -= 1


class WorkerPool:
    """Free workers in an asyncio queue; at most `max_queue` requests wait for one. Use from the event loop."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.workers: list[Worker] = []
        self.free: asyncio.Queue[Worker] = asyncio.Queue()
        self.waiting = 0
        self.served = 0
        self.tokens = 0
        self.load_error: str | None = None

    @property
    def ready(self) -> bool:
        return bool(self.workers)

    def add(self, worker: Worker):
        self.workers.append(worker)
        self.free.put_nowait(worker)

    def admit(self) -> Ticket:
        """A ticket, or NotReady/QueueFull when the request cannot even wait."""
        if not self.ready:
            raise NotReady(self.load_error or "the model is still loading")
        if self.waiting - self.free.qsize() >= self.max_queue:
            raise QueueFull(f"all {len(self.workers)} workers are busy and {self.waiting} requests are waiting")
        self.waiting += 1
        return Ticket(self)

    async def acquire(self, ticket: Ticket) -> Worker:
        try:
            worker = await self.free.get()
        finally:
            ticket.leave()
        worker.busy = True
        return worker

    def release(self, worker: Worker, finished: Finished):
        worker.busy = False
        self.served += 1
        self.tokens += finished.tokens
        self.free.put_nowait(worker)


def run_job(worker: Worker, job: Job, post: Callable[[object], None]) -> Finished:
    """Generate in the calling thread, posting the Pieces; returns how it ended."""
    stream, stop_tokens = TextStream(worker.tokenizer), worker.stop_tokens()
    start = time.perf_counter()
    first = None
    tokens, outcome, error = 0, Outcome.LENGTH, None
    try:
        with worker.autocast():
            for column, _ in worker.engine.generate(job.prompt, num_samples=1, max_tokens=job.sampling.max_tokens,
                                                    temperature=job.sampling.temperature,
                                                    top_k=job.sampling.top_k, seed=job.seed):
                if job.stop.is_set():
                    outcome = Outcome.STOPPED
                    break
                if column[0] in stop_tokens:
                    outcome = Outcome.DONE
                    break
                tokens += 1
                first = first or time.perf_counter()
                for piece in stream.feed(column[0]):
                    post(piece)
        for piece in stream.finish():
            post(piece)
    except Exception as e:  # noqa: BLE001 - one request's failure is reported to it and logged, never raised
        outcome, error = Outcome.ERROR, f"{type(e).__name__}: {e}"
        if not isinstance(e, ValueError):  # ValueError: the engine refusing a prompt (too long), not a bug
            log.exception("request %d failed on worker %d", job.request_id, worker.index)
    seconds = time.perf_counter() - start
    finished = Finished(outcome, tokens, seconds, error)
    log_request(worker, job, finished, first - start if first else None)
    return finished


def log_request(worker: Worker, job: Job, finished: Finished, ttft: float | None):
    rate = finished.tokens / finished.seconds if finished.seconds > 0 else 0.0
    ttft_text = f"{ttft * 1000:.0f} ms" if ttft is not None else "-"
    log.info("request %d worker %d: %s, %d prompt tokens, %d tokens in %.2f s (%.1f tok/s), first token %s%s",
             job.request_id, worker.index, finished.outcome.value, len(job.prompt), finished.tokens,
             finished.seconds, rate, ttft_text, f", {finished.error}" if finished.error else "")


def start_job(pool: WorkerPool, worker: Worker, job: Job, inbox: asyncio.Queue) -> threading.Thread:
    """Run `job` on `worker` in a new thread; pieces land in `inbox`; the worker returns to `pool` at the end."""
    loop = asyncio.get_running_loop()
    thread = threading.Thread(target=_work, args=(loop, pool, worker, job, inbox), name=f"chat-{job.request_id}",
                              daemon=True)
    thread.start()
    return thread


def _work(loop, pool: WorkerPool, worker: Worker, job: Job, inbox: asyncio.Queue):
    post = partial(_post, loop, inbox, job)
    finished = run_job(worker, job, post)
    try:  # the worker is back in the pool before the client hears "done" (the loop runs callbacks in order)
        loop.call_soon_threadsafe(pool.release, worker, finished)
    except RuntimeError:  # the event loop is gone (server shutting down)
        return
    post(finished)


def _post(loop, inbox: asyncio.Queue, job: Job, item):
    try:
        loop.call_soon_threadsafe(inbox.put_nowait, item)
    except RuntimeError:  # the event loop is gone: nobody is listening any more
        job.stop.set()

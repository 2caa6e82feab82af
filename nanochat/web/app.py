"""The FastAPI app: the page, the streaming completions endpoint, health and stats.

    GET  /                  the chat page (ui.html, self-contained)
    POST /chat/completions  {"messages": [...], "temperature"?, "top_k"?, "max_tokens"?} -> text/event-stream:
                            : waiting for a free worker                 (an SSE comment, when queued)
                            data: {"token": "...", "gpu": n}            text (plus "kind": "tool_call" or
                                                                        "tool_output" for calculator pieces)
                            data: {"error": "..."}                      only if the generation failed
                            data: {"done": true, "finish": ..., "tokens": n, "seconds": s}
                            400 {"error", "field"} for a bad request; 503 + Retry-After when the queue is full
                            or the model is not loaded yet
    GET  /health            {"status": "ok"|"loading"|"error", "ready", "model_loaded", ...}; 503 until ready
    GET  /stats             workers, busy/free, queue length and limit, requests served, tokens generated

`create_app(load, info)` returns the app; `load()` (slow: torch and the weights) runs in a thread once the server
is up, so /health answers "loading" meanwhile.
"""

import asyncio
import itertools
import json
import logging
import random
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from nanochat.web.pool import Finished, Job, NotReady, QueueFull, Ticket, WorkerPool, start_job
from nanochat.web.schema import MAX_BODY_BYTES, Message, RequestError, parse_chat_request
from nanochat.web.stream import Kind, Piece

RETRY_AFTER_S = 2

log = logging.getLogger("nanochat.web")


@dataclass(frozen=True)
class ServerInfo:
    """What /health says about the model being served."""
    phase: str
    model_tag: str
    step: int
    device: str

    @property
    def mode(self) -> str:
        return "completion" if self.phase == "base" else "chat"


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def token_event(piece: Piece, gpu: int) -> dict:
    event = {"token": piece.text, "gpu": gpu}
    if piece.kind != Kind.TEXT:
        event["kind"] = piece.kind.value
    return event


def build_prompt(tokenizer, messages: list[Message], chat_mode: bool) -> list[int]:
    """Chat models see the whole conversation; a base model continues the last user message as plain text."""
    if chat_mode:
        return tokenizer.render_for_completion({"messages": [m.model_dump() for m in messages]})
    return [tokenizer.get_bos_token_id()] + tokenizer.encode(messages[-1].content)


async def generate_events(pool: WorkerPool, ticket: Ticket, job: Job):
    """The body of one streaming response: wait for a worker, then relay what its thread posts."""
    try:
        if pool.free.empty():  # an SSE comment (clients skip it): the headers go out now, the client knows it waits
            yield ": waiting for a free worker\n\n"
        worker = await pool.acquire(ticket)
        inbox: asyncio.Queue = asyncio.Queue()
        start_job(pool, worker, job, inbox)
        while True:
            item = await inbox.get()
            if isinstance(item, Finished):
                break
            yield sse(token_event(item, worker.index))
        if item.error:
            yield sse({"error": item.error})
        yield sse({"done": True, "finish": item.outcome.value, "tokens": item.tokens,
                   "seconds": round(item.seconds, 3)})
    finally:  # normal end, client gone (the task is cancelled), or a failure: the thread stops at its next token
        job.stop.set()


class ChatStream(StreamingResponse):
    """The event stream of one job; its ticket and job are let go even if the body never starts streaming."""

    def __init__(self, pool: WorkerPool, ticket: Ticket, job: Job):
        super().__init__(generate_events(pool, ticket, job), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.ticket, self.job = ticket, job

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.leave()
            self.job.stop.set()


def error_response(status: int, message: str, field: str | None = None, retry: bool = False) -> JSONResponse:
    body = {"error": message} if field is None else {"error": message, "field": field}
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request) -> bytes:
    """The request body, refusing to hold more than MAX_BODY_BYTES of it."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError("body", f"is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def load_in_background(loop: asyncio.AbstractEventLoop, pool: WorkerPool, load: Callable[[], list]):
    """Thread target: build the workers and hand them to the pool on the event loop; a failure is kept for /health."""
    try:
        workers = load()
    except Exception as e:  # noqa: BLE001 - reported by /health and the log; the server keeps answering
        log.error("loading the model failed: %s: %s", type(e).__name__, e)
        loop.call_soon_threadsafe(setattr, pool, "load_error", f"loading the model failed: {e}")
        return
    for worker in workers:
        loop.call_soon_threadsafe(pool.add, worker)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start loading the model once the server runs; the app answers (/health: loading) meanwhile."""
    threading.Thread(target=load_in_background, args=(asyncio.get_running_loop(), app.state.pool, app.state.load),
                     name="load-model", daemon=True).start()
    yield


router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def index(request: Request):
    return HTMLResponse(request.app.state.page)


@router.post("/chat/completions")
async def chat_completions(request: Request):
    pool: WorkerPool = request.app.state.pool
    try:
        messages, sampling = parse_chat_request(await read_body(request))
        ticket = pool.admit()
    except RequestError as e:
        return error_response(400, e.message, e.field)
    except (QueueFull, NotReady) as e:
        return error_response(503, str(e), retry=True)
    try:
        prompt = build_prompt(pool.workers[0].tokenizer, messages, request.app.state.info.mode == "chat")
    except ValueError as e:  # the tokenizer's own conversation rules; the schema should have caught it first
        ticket.leave()
        return error_response(400, str(e), "messages")
    job = Job(next(request.app.state.request_ids), prompt, sampling, seed=random.getrandbits(31))
    return ChatStream(pool, ticket, job)


@router.get("/health")
async def health(request: Request):
    pool: WorkerPool = request.app.state.pool
    info: ServerInfo = request.app.state.info
    status = "ok" if pool.ready else ("error" if pool.load_error else "loading")
    body = {"status": status, "ready": pool.ready, "model_loaded": pool.ready, "workers": len(pool.workers),
            "available_workers": pool.free.qsize(), "mode": info.mode, **asdict(info)}
    if pool.load_error:
        body["error"] = pool.load_error
    return JSONResponse(body, status_code=200 if pool.ready else 503)


@router.get("/stats")
async def stats(request: Request):
    pool: WorkerPool = request.app.state.pool
    busy = sum(w.busy for w in pool.workers)
    return {"total_workers": len(pool.workers), "available_workers": len(pool.workers) - busy,
            "busy_workers": busy, "queue_length": pool.waiting, "queue_limit": pool.max_queue,
            "requests_served": pool.served, "tokens_generated": pool.tokens,
            "workers": [{"gpu_id": w.index, "device": w.device, "busy": w.busy} for w in pool.workers]}


def create_app(load: Callable[[], list], info: ServerInfo, max_queue: int = 64) -> FastAPI:
    """The app serving the workers `load()` builds; at most `max_queue` requests wait for a free worker."""
    app = FastAPI(title="nanochat", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pool = WorkerPool(max_queue)
    app.state.load = load
    app.state.info = info
    app.state.page = resources.files("nanochat.web").joinpath("ui.html").read_text(encoding="utf-8")
    app.state.request_ids = itertools.count(1)
    app.include_router(router)
    return app

"""The web chat server the Chat screen can start for the checkpoint it has picked:
`python -m nanochat.scripts.chat_web -i PHASE --model-tag TAG --step N --port P` on a free port of 127.0.0.1.

`WebChatService` owns the process (an exclusive app worker, group "web-chat"), polls its /health until the model
is loaded, then posts WebChatChanged(url) to the app; when it stops or fails, WebChatChanged(None, error).
"""

import asyncio
import signal
import socket
import sys
from collections import deque

from workbench.tui.messages import WebChatChanged
from workbench.tui.services.process import signal_group, stream_lines
from workbench.tui.services.runs import Checkpoint

HOST = "127.0.0.1"
HEALTH_POLL_S = 0.5
STOP_GRACE_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def serve_command(checkpoint: Checkpoint, port: int) -> list[str]:
    return [sys.executable, "-m", "nanochat.scripts.chat_web", "-i", checkpoint.phase, "--model-tag", checkpoint.tag,
            "--step", str(checkpoint.step), "--port", str(port), "--host", HOST]


async def healthy(port: int) -> bool:
    """True once GET /health answers 200 (the server answers 503 while the model loads)."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    try:
        writer.write(f"GET /health HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status = (await reader.readline()).split()
        return len(status) >= 2 and status[1] == b"200"
    except OSError:
        return False
    finally:
        writer.close()


class WebChatService:
    def __init__(self, app):
        self.app = app
        self.process: asyncio.subprocess.Process | None = None
        self.checkpoint: Checkpoint | None = None
        self.url: str | None = None
        self.lines: deque = deque(maxlen=50)
        self.command_for = serve_command  # (checkpoint, port) -> argv; tests put a stand-in here

    @property
    def active(self) -> bool:
        """Started (loading or serving) and not stopped."""
        return self.checkpoint is not None

    def start(self, checkpoint: Checkpoint) -> None:
        self.checkpoint, self.url = checkpoint, None
        self.app.run_worker(self._serve(checkpoint, free_port()), name=f"web chat {checkpoint.key}",
                            group="web-chat", exclusive=True, exit_on_error=False)

    async def _serve(self, checkpoint: Checkpoint, port: int) -> None:
        self.lines.clear()

        def keep(process):
            self.process = process

        serving = asyncio.ensure_future(stream_lines(self.command_for(checkpoint, port), self.lines.append,
                                                     started=keep))
        watching = asyncio.ensure_future(self._wait_healthy(port))
        try:
            returncode = await serving
        finally:
            watching.cancel()
            serving.cancel()
        self.url, self.checkpoint, self.process = None, None, None
        error = None if returncode in (0, -signal.SIGINT, -signal.SIGTERM) else \
            (self.lines[-1] if self.lines else f"exit {returncode}")
        self.app.post_message(WebChatChanged(None, error))

    async def _wait_healthy(self, port: int) -> None:
        while not await healthy(port):
            await asyncio.sleep(HEALTH_POLL_S)
        self.url = f"http://{HOST}:{port}/"
        self.app.post_message(WebChatChanged(self.url))

    async def stop(self) -> None:
        """Ctrl-C to the server (uvicorn shuts down cleanly); whatever is left after STOP_GRACE_S is killed."""
        if not self.active:
            return
        process = self.process
        if signal_group(process, signal.SIGINT):
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                pass
        self.app.workers.cancel_group(self.app, "web-chat")  # stream_lines kills the process group if still there
        self.url, self.checkpoint, self.process = None, None, None
        self.app.post_message(WebChatChanged(None))

"""The chat model process the TUI owns: `python -m workbench.tui.services.chat_worker` on one checkpoint.

`ChatModel.load` starts the process in a worker of the app's (group "chat-model": exclusive, so picking another
checkpoint, or quitting, ends the old process first) and posts every JSON event it streams back to the
listener (the Chat screen) as a ChatEvent. The screen only draws the conversation and calls `send`/`stop_reply`.

The learner's engine (the engine track's learner_engine.py) generates once its last check in this session passed
every row; until then nanochat's does. Which one is decided when a checkpoint is loaded, and the ready event says.
"""

import asyncio
import json
import sys

from workbench.tracks.engine.spec import SPEC as ENGINE_SPEC
from workbench.tui.messages import ChatEvent

STOP_GRACE_S = 2.0


class ChatModel:
    def __init__(self, app):
        self.app = app
        self.process: asyncio.subprocess.Process | None = None
        self.checkpoint: tuple[str, str, int] | None = None  # (phase, tag, step) loaded or loading
        self.ready = False
        self.mode = "chat"  # "completion" for a base checkpoint

    def load(self, phase: str, tag: str, step: int, listener) -> None:
        """Start the model process for a checkpoint; events go to `listener` (a message pump)."""
        self.checkpoint, self.ready = (phase, tag, step), False
        self.app.run_worker(self._serve(phase, tag, step, listener), name=f"chat model {phase} {tag} {step}",
                            group="chat-model", exclusive=True, exit_on_error=False)

    def learner_engine(self) -> str | None:
        """The workspace's engine file when its last check passed, else None (nanochat's engine)."""
        name = ENGINE_SPEC.files[0].learner_file
        report = getattr(self.app, "reports", {}).get(name)
        path = self.app.workspace / name
        return str(path) if report is not None and report.result.get("ok") and path.is_file() else None

    async def _serve(self, phase: str, tag: str, step: int, listener) -> None:
        await self.close()
        engine = self.learner_engine()
        self.process = process = await _spawn(sys.executable, "-m", "workbench.tui.services.chat_worker",
                                              "--phase", phase, "--tag", tag, "--step", str(step),
                                              *(["--engine", engine] if engine else []))
        try:
            async for raw in process.stdout:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # a stray print from a learner model
                if event.get("event") == "ready":
                    self.ready, self.mode = True, event.get("mode", "chat")
                listener.post_message(ChatEvent(event.get("event", ""), event.get("text", ""), event))
            await process.wait()
            if process.returncode not in (0, None) and self.process is process:
                err = (await process.stderr.read()).decode("utf-8", "replace").strip().splitlines()
                self.ready = False
                listener.post_message(ChatEvent("error", data={"message": f"the model process exited with "
                                                              f"{process.returncode}: {err[-1] if err else ''}"}))
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())  # reap it, so no transport outlives the event loop
            raise
        finally:
            process.stdin.close()

    async def send(self, request: dict) -> bool:
        if not self.ready or self.process is None or self.process.returncode is not None:
            return False
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        return True

    def stop_reply(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.stdin.write(b'{"cmd": "stop"}\n')

    async def close(self) -> None:
        """End the model process: EOF on its stdin, then a kill if it does not go within STOP_GRACE_S."""
        process, self.process, self.ready = self.process, None, False
        if process is not None and process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def _spawn(*command: str) -> asyncio.subprocess.Process:
    """Start a process with pipes; cancelled while it starts, it is still started and then ended (never leaked)."""
    starting = asyncio.ensure_future(asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        process = await starting
        process.kill()
        await process.wait()
        process.stdin.close()
        raise

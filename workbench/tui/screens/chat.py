"""The chat screen: pick a checkpoint, then talk to it with tokens streaming in as they are generated.

The model runs in its own process (`python -m workbench.tui.services.chat_worker`, which imports torch and
nanochat's Engine); this screen sends it JSON requests and turns the JSON events it streams back into the conversation.
Base checkpoints have never seen a chat, so with them the prompt is continued as plain text.
"""

import asyncio
import json
import sys

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Select, Static

from workbench.tui.messages import ChatEvent
from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.services.runs import base_dir, scan_runs
from workbench.tui.widgets.chat_turn import ChatTurn
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar

SOURCES = ("sft", "mid", "rl", "base")
TINY_RUN_STEPS = 50


def checkpoint_options() -> list[tuple[str, str]]:
    """(label, "source:tag:step") for the last step of every checkpoint folder, chat-tuned ones first."""
    options = []
    for source in SOURCES:
        for run in scan_runs(base_dir(), source):
            if not run.steps:
                continue
            model = "reference" if run.model_source == "reference" else "learner"
            options.append((f"{source} · {run.tag} · step {run.steps[-1]} · {model}",
                            f"{source}:{run.tag}:{run.steps[-1]}"))
    return options


class ChatScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("ctrl+x", "stop", "Stop", priority=True),
        Binding("ctrl+l", "clear", "Clear chat"),
        Binding("ctrl+t", "train_tiny", "Train a tiny model"),
        Binding("ctrl+r", "rescan", "Rescan checkpoints", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False
        self.mode = "chat"
        self.generating = False
        self.reply: ChatTurn | None = None

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="chat-controls"):
            yield Label("model")
            yield Select([], prompt="pick a checkpoint", id="chat-checkpoint", compact=True)
            yield Label("temp")
            yield Input("0.8", id="chat-temperature", type="number", compact=True)
            yield Label("top-k")
            yield Input("50", id="chat-top-k", type="integer", compact=True)
            yield Button("Stop ^x", id="chat-stop", disabled=True, compact=True)
        yield Static("", id="chat-empty")
        yield VerticalScroll(id="chat-log")
        yield Input(placeholder="type a message, enter to send", id="chat-input", disabled=True)
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode, self.query_one(TopBar).file = "chat", self.app.learner_path.name
        self.action_rescan()

    def on_screen_resume(self) -> None:
        if not self.ready:
            self.action_rescan()

    def action_rescan(self) -> None:
        options = checkpoint_options()
        select = self.query_one("#chat-checkpoint", Select)
        current = select.value
        select.set_options(options)
        empty = self.query_one("#chat-empty", Static)
        if options:
            empty.display = False
            values = [v for _, v in options]
            if current in values:
                select.value = current
            elif not self.ready:
                select.value = values[0]
        else:
            empty.display = True
            empty.update(f"No checkpoint yet in {base_dir()}.\n\n"
                         f"Press ctrl+t to train a tiny one here ({TINY_RUN_STEPS} steps of the reference model at "
                         f"depth 4; it babbles, but it is yours), or start a run of your own model on the Runs "
                         f"screen (4). Then come back and pick it above.")

    # ---- the model process -------------------------------------------------------------------------------------

    @on(Select.Changed, "#chat-checkpoint")
    def _checkpoint_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value.count(":") == 2:
            phase, tag, step = str(event.value).split(":")
            self.start_model(phase, tag, int(step))

    @work(exclusive=True, group="chat-model", exit_on_error=False)
    async def start_model(self, phase: str, tag: str, step: int) -> None:
        await self._stop_process()
        self.ready = False
        self.query_one("#chat-input", Input).disabled = True
        self.notify(f"Loading {phase} {tag} step {step}…", timeout=3)
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workbench.tui.services.chat_worker", "--phase", phase, "--tag", tag,
            "--step", str(step),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            async for raw in process.stdout:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # a stray print from a learner model
                self.post_message(ChatEvent(event.get("event", ""), event.get("text", ""), event))
            await process.wait()
            if process.returncode not in (0, None) and self.process is process:
                err = (await process.stderr.read()).decode("utf-8", "replace").strip().splitlines()
                self.post_message(ChatEvent("error", data={"message": f"the model process exited with "
                                                          f"{process.returncode}: {err[-1] if err else ''}"}))
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())  # reap it, so no transport outlives the event loop
            raise

    async def _stop_process(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 2)
            except asyncio.TimeoutError:
                self.process.kill()
        self.process = None

    async def on_chat_event(self, event: ChatEvent) -> None:
        if event.kind == "ready":
            self.ready, self.mode = True, event.data.get("mode", "chat")
            box = self.query_one("#chat-input", Input)
            box.disabled = False
            box.placeholder = ("type a message, enter to send" if self.mode == "chat" else
                               "a base model continues text: type the start of a sentence, enter")
            box.focus()
            self.notify(f"Ready on {event.data.get('device')} ({self.mode} mode).", timeout=3)
        elif event.kind in ("token", "tool", "tool_output") and self.reply is not None:
            await self.reply.append(event.kind, event.text)
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
        elif event.kind == "done":
            await self._finish_reply("stopped" if event.data.get("stopped") else
                                     f"{event.data.get('tokens')} tokens in {event.data.get('seconds')} s")
        elif event.kind == "error":
            await self._finish_reply(None)
            self.notify(str(event.data.get("message")), title="Chat", severity="error", timeout=15)

    async def _finish_reply(self, note: str | None) -> None:
        if self.reply is not None:
            await self.reply.finish(note)
            self.reply = None
        self.generating = False
        self.query_one("#chat-stop", Button).disabled = True

    # ---- talking ----------------------------------------------------------------------------------------------

    @on(Input.Submitted, "#chat-input")
    async def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or not self.ready or self.generating or self.process is None:
            return
        try:
            temperature = float(self.query_one("#chat-temperature", Input).value or 0)
            top_k = int(self.query_one("#chat-top-k", Input).value or 0)
        except ValueError:
            self.notify("Temperature must be a number (0 = greedy) and top-k a whole number (0 = off).",
                        severity="error")
            return
        event.input.value = ""
        log = self.query_one("#chat-log", VerticalScroll)
        history = [turn.as_message() for turn in log.query(ChatTurn)]
        user = ChatTurn("user", text)
        self.reply = ChatTurn("assistant")
        await log.mount_all([user, self.reply])
        log.scroll_end(animate=False)
        messages = history + [user.as_message()] if self.mode == "chat" else [user.as_message()]
        request = {"cmd": "generate", "messages": messages, "temperature": max(0.0, temperature),
                   "top_k": top_k if top_k > 0 else None, "max_tokens": 256}
        self.generating = True
        self.query_one("#chat-stop", Button).disabled = False
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()

    @on(Button.Pressed, "#chat-stop")
    def action_stop(self) -> None:
        if self.generating and self.process is not None and self.process.returncode is None:
            self.process.stdin.write(b'{"cmd": "stop"}\n')

    async def action_clear(self) -> None:
        if not self.generating:
            await self.query_one("#chat-log", VerticalScroll).remove_children()

    async def action_train_tiny(self) -> None:
        """Start a tiny reference run on the runs screen; its checkpoint appears here when it finishes."""
        await self.app.switch_mode("runs")
        self.app.screen.start_run("reference", TINY_RUN_STEPS, "d4")

    async def on_unmount(self) -> None:
        await self._stop_process()

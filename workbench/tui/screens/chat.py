"""The chat screen: pick a checkpoint of any phase (base, mid, sft, rl), then talk to it with tokens streaming in.

It only displays: the model process belongs to the app's ChatModel service (workbench/tui/services/chat_model.py),
which posts the worker's events here as ChatEvents. Base checkpoints have never seen a chat, so with them the
prompt is continued as plain text. Typing anywhere on this screen goes to the message box; esc leaves it.
ctrl+o shows, under the conversation, the five likeliest tokens at each step of the answers that follow.
"""

from functools import partial
from pathlib import Path

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Select, Static

from workbench.tui.messages import ChatEvent
from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.services.runs import Checkpoint, base_dir, list_checkpoints
from workbench.tui.services.training import RunBusy
from workbench.tui.widgets.candidates import CandidatesPanel
from workbench.tui.widgets.chat_turn import ChatTurn
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar

TINY_RUN_STEPS = 50


def checkpoint_label(checkpoint: Checkpoint) -> str:
    model = "reference" if checkpoint.model_source == "reference" else "yours"
    return f"{checkpoint.phase} · {checkpoint.tag} · {checkpoint.step} · {model}"


class ChatScreen(WorkbenchScreen):
    BINDINGS = [
        Binding("ctrl+x", "stop", "Stop", priority=True, tooltip="Stop the reply being generated"),
        Binding("ctrl+l", "clear", "Clear", tooltip="Clear the conversation (the model forgets it)"),
        Binding("ctrl+t", "train_tiny", "Train tiny",
                tooltip="Train a tiny model here: yours once every check passes, else the reference"),
        Binding("ctrl+r", "rescan", "Rescan", show=False,  # done on every visit and after each run
                tooltip="List the checkpoints again (done by itself on every visit and when a run ends)"),
        Binding("ctrl+w", "web_chat", "Web chat",
                tooltip="Start (or stop) the web chat server for the picked checkpoint"),
        Binding("ctrl+o", "toggle_candidates", "Top-5",
                tooltip="Show the 5 likeliest tokens, with their probabilities, at each step of the next answers"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.checkpoints: dict[str, Checkpoint] = {}  # by "phase:tag:step", as listed
        self.generating = False
        self.reply: ChatTurn | None = None
        self.milestones_recorded: set[str] = set()  # the checkpoints whose chat already wrote STATUS.md's milestones

    @property
    def ready(self) -> bool:
        return self.app.chat_model.ready

    @property
    def mode(self) -> str:
        return self.app.chat_model.mode

    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        with Horizontal(id="chat-controls"):
            yield Label("model", classes="wide-only")
            yield Select([], prompt="pick a checkpoint", id="chat-checkpoint", compact=True)
            yield Label("temp")
            yield Input("0.8", id="chat-temperature", type="number", compact=True)
            yield Label("top-k")
            yield Input("50", id="chat-top-k", type="integer", compact=True)
            yield Button("Stop ^x", id="chat-stop", disabled=True, compact=True)
        yield Static("", id="chat-web")
        yield Static("", id="chat-empty")
        yield VerticalScroll(id="chat-log")
        yield CandidatesPanel(id="chat-candidates")
        yield Input(placeholder="type a message, enter to send", id="chat-input", disabled=True, select_on_focus=False)
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(CandidatesPanel).display = False
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode, self.query_one(TopBar).file = "chat", self.app.learner_path.name
        self.watch(self.app, "checkpoints_version", lambda _: self.action_rescan())  # a run ended: list it
        self.watch(self.app, "web_chat", self._show_web_chat)

    def on_screen_resume(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        self.checkpoints = {c.key: c for c in list_checkpoints(base_dir())}
        options = [(checkpoint_label(c), key) for key, c in self.checkpoints.items()]
        select = self.query_one("#chat-checkpoint", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options(options)
        empty = self.query_one("#chat-empty", Static)
        empty.display = not options
        if not options:
            empty.update(f"No checkpoint yet in {base_dir()}.\n\nPress ctrl+t to train a tiny one here "
                         f"({TINY_RUN_STEPS} steps at depth 4: your model once every check passes, else the "
                         f"reference; it babbles, but it is yours), or start a run on the Runs screen (4). It "
                         f"appears above when the run ends.")
            return
        values = [v for _, v in options]
        if current in values:
            with self.prevent(Select.Changed):
                select.value = current
        elif self.app.chat_model.checkpoint is None:
            select.value = values[0]  # loads it

    # ---- the model -------------------------------------------------------------------------------------------

    @on(Select.Changed, "#chat-checkpoint")
    def _checkpoint_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value.count(":") == 2:
            phase, tag, step = str(event.value).split(":")
            if self.app.chat_model.checkpoint != (phase, tag, int(step)):
                self.query_one("#chat-input", Input).disabled = True
                self.notify(f"Loading {phase} {tag} step {step}…", timeout=3)
                self.app.chat_model.load(phase, tag, int(step), listener=self)

    async def on_chat_event(self, event: ChatEvent) -> None:
        if event.kind == "ready":
            box = self.query_one("#chat-input", Input)
            box.disabled = False
            box.placeholder = ("type a message, enter to send" if self.mode == "chat" else
                               "a base model continues text: type the start of a sentence, enter")
            box.focus()
            engine = "" if event.data.get("engine", "reference") == "reference" else ", your engine"
            self.notify(f"Ready on {event.data.get('device')} ({self.mode} mode{engine}).", timeout=3)
        elif event.kind == "candidates":
            self.query_one(CandidatesPanel).add(event.data.get("token"), event.text, event.data.get("top") or [])
        elif event.kind in ("token", "tool", "tool_output") and self.reply is not None:
            await self.reply.append(event.kind, event.text)
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
        elif event.kind == "done":
            await self._finish_reply("stopped" if event.data.get("stopped") else
                                     f"{event.data.get('tokens')} tokens in {event.data.get('seconds')} s")
            label = self._loaded_label()
            if label not in self.milestones_recorded and self._talking_to_the_learners_model():
                self.milestones_recorded.add(label)  # STATUS.md keeps their first date: once per checkpoint is enough
                self.app.run_worker(partial(self._record_milestones, label), thread=True, group="status-write",
                                    exit_on_error=False)
        elif event.kind == "error":
            await self._finish_reply(None)
            self.notify(str(event.data.get("message")), title="Chat", severity="error", timeout=15)

    async def _finish_reply(self, note: str | None) -> None:
        if self.reply is not None:
            await self.reply.finish(note)
            self.reply = None
        self.generating = False
        self.query_one("#chat-stop", Button).disabled = True

    # ---- the web chat server (services/web_chat.py) --------------------------------------------------------

    async def action_web_chat(self) -> None:
        """Start the web chat server for the picked checkpoint, or stop the one running."""
        server = self.app.web_server
        if server.active:
            await server.stop()
            return
        key = self.query_one("#chat-checkpoint", Select).value
        checkpoint = self.checkpoints.get(key) if isinstance(key, str) else None
        if checkpoint is None:
            self.notify("Pick a checkpoint first.", severity="warning")
            return
        server.start(checkpoint)
        self._show_web_chat(None)

    def _show_web_chat(self, state) -> None:
        line = self.query_one("#chat-web", Static)
        server = self.app.web_server
        checkpoint = server.checkpoint
        line.display = checkpoint is not None
        if checkpoint is None:
            return
        where = f"{checkpoint.phase} {checkpoint.tag} step {checkpoint.step}"
        line.update(f"web chat: {server.url}  ({where}; ctrl+w stops it)" if server.url else
                    f"web chat: starting the server for {where}… (ctrl+w stops it)")

    def _loaded_label(self) -> str | None:
        if not self.app.chat_model.checkpoint:
            return None
        phase, tag, step = self.app.chat_model.checkpoint
        return f"{phase} · {tag} · step {step} ({self.app.learner_path.name})"

    def _record_milestones(self, detail: str) -> None:
        """In a thread: STATUS.md's "Full pipeline" (the learner's model trained with base_train --model and
        chatted with) and "First chat" milestones, one after the other (kept at their first date once reached)."""
        from workbench.status.milestones import Milestone, record_milestone
        for problem in (self.app.reach_milestone("Full pipeline"),
                        record_milestone(self.app.workspace, Milestone.FIRST_CHAT, detail)):
            if problem:
                self.app.call_from_thread(self.app.notify_once, problem, title="STATUS.md not updated")

    def _talking_to_the_learners_model(self) -> bool:
        loaded = self.app.chat_model.checkpoint
        checkpoint = self.checkpoints.get(":".join(map(str, loaded))) if loaded else None
        return checkpoint is not None and checkpoint.model_source != "reference" and \
            Path(checkpoint.model_source).resolve() == self.app.learner_path.resolve()

    # ---- talking ----------------------------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        """Printable keys typed while the message box is not focused go into it (never to shortcuts)."""
        box = self.query_one("#chat-input", Input)
        if (event.is_printable and event.character and not box.disabled and not box.has_focus
                and not isinstance(self.focused, Input)):
            event.stop()
            event.prevent_default()
            box.focus()
            box.insert_text_at_cursor(event.character)

    @on(Input.Submitted, "#chat-input")
    async def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or not self.ready or self.generating:
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
                   "top_k": top_k if top_k > 0 else None, "max_tokens": 256, "top5": self.show_candidates}
        if self.show_candidates:
            self.query_one(CandidatesPanel).reset()
        self.generating = True
        self.query_one("#chat-stop", Button).disabled = False
        if not await self.app.chat_model.send(request):
            await self._finish_reply("the model is not running: pick a checkpoint")

    @property
    def show_candidates(self) -> bool:
        return self.query_one(CandidatesPanel).display

    def action_toggle_candidates(self) -> None:
        """Show or hide the top-5 view; the model reports candidates only for answers asked while it is shown."""
        panel = self.query_one(CandidatesPanel)
        panel.display = not panel.display
        if panel.display and not panel.tokens:
            self.notify("Top-5 on: the next answer shows the 5 likeliest tokens at each step (ctrl+o hides them).",
                        timeout=4)

    @on(Button.Pressed, "#chat-stop")
    def action_stop(self) -> None:
        if self.generating:
            self.app.chat_model.stop_reply()

    async def action_clear(self) -> None:
        if not self.generating:
            await self.query_one("#chat-log", VerticalScroll).remove_children()

    def action_train_tiny(self) -> None:
        """A tiny run of the learner's model when every check passes, else of the reference; the Runs screen
        shows it, and its checkpoint is listed here when it ends."""
        report = self.app.report
        mine = report is not None and bool(report.result.get("ok")) and self.app.learner_path.exists()
        model, stem = (str(self.app.learner_path), "d4-learner") if mine else ("reference", "d4")
        try:
            run = self.app.runs.start(model, TINY_RUN_STEPS, stem)
        except RunBusy as e:
            self.notify(str(e), severity="warning")
            return
        whose = "your model" if mine else "the reference (your model once every check passes)"
        self.notify(f"Training {run.tag}: {TINY_RUN_STEPS} steps of {whose}. It is listed here when it ends.",
                    title="Tiny run")
        self.app.switch_mode("runs")

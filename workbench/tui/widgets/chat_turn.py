"""One turn of the chat: the learner's message, or the model's reply streamed in as it is generated.

A reply is a sequence of parts: text (Markdown, streamed through Markdown.get_stream so a long reply costs
one incremental append per batch of tokens, not a re-render per token), and calculator calls shown apart from
the text, with the expression the model wrote and the answer the tool forced back into the stream.
"""

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Markdown, Static


class ToolCall(Static):
    """A calculator call: what the model asked, and what the tool answered."""

    DEFAULT_CSS = """
    ToolCall { border: round $accent; padding: 0 1; margin: 0 0 0 2; width: auto; max-width: 100%; }
    """

    def __init__(self, expression: str = ""):
        super().__init__()
        self.expression, self.output = expression, None
        self.border_title = "calculator"

    def render(self) -> Text:
        text = Text.assemble(("» ", "dim"), (self.expression, "bold"))
        if self.output is not None:
            text.append("  =  ", style="dim")
            text.append(self.output, style="bold green")
        return text


class ChatTurn(Vertical):
    DEFAULT_CSS = """
    ChatTurn { height: auto; margin-bottom: 1; }
    ChatTurn > Label { color: $text-muted; text-style: bold; }
    ChatTurn.-user > Static { color: $text; padding-left: 2; }
    ChatTurn Markdown { margin: 0 0 0 2; padding: 0; }
    """

    def __init__(self, role: str, text: str = ""):
        super().__init__(classes=f"-{role}")
        self.role, self.initial = role, text
        self.parts: list[dict] = []  # the reply as conversation parts (text / python / python_output)
        self._stream = None
        self._kind = None
        self._tool: ToolCall | None = None

    def compose(self) -> ComposeResult:
        yield Label("you" if self.role == "user" else "model")
        if self.role == "user":
            yield Static(Text(self.initial))

    async def append(self, kind: str, text: str) -> None:
        """Add streamed text of one kind: token (reply text), tool (expression) or tool_output (its answer)."""
        if kind == "token":
            if self._kind != "token":
                await self._close_stream()
                markdown = Markdown()
                await self.mount(markdown)
                self._stream = Markdown.get_stream(markdown)
                self.parts.append({"type": "text", "text": ""})
            self.parts[-1]["text"] += text
            await self._stream.write(text)
        elif kind == "tool":
            if self._kind != "tool":
                await self._close_stream()
                self._tool = ToolCall()
                await self.mount(self._tool)
                self.parts.append({"type": "python", "text": ""})
            self.parts[-1]["text"] += text
            self._tool.expression += text
            self._tool.refresh(layout=True)
        elif kind == "tool_output":
            if self._kind != "tool_output":
                self.parts.append({"type": "python_output", "text": ""})
            self.parts[-1]["text"] += text
            if self._tool is None:
                self._tool = ToolCall("?")
                await self.mount(self._tool)
            self._tool.output = (self._tool.output or "") + text
            self._tool.refresh(layout=True)
        self._kind = kind

    async def finish(self, note: str | None = None) -> None:
        await self._close_stream()
        if note:
            await self.mount(Static(Text(note, style="dim italic")))

    async def _close_stream(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None

    def as_message(self) -> dict:
        if self.role == "user":
            return {"role": "user", "content": self.initial}
        parts = [p for p in self.parts if p["text"]]
        if all(p["type"] == "text" for p in parts):
            return {"role": "assistant", "content": "".join(p["text"] for p in parts)}
        return {"role": "assistant", "content": parts}

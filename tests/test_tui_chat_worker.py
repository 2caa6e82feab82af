"""The chat screen's model process and its rendering: text is decoded incrementally without ever splitting a
UTF-8 character, calculator calls come out as their own events, stop ends a reply, and the chat turn shows a
tool call apart from the text. The engine here is scripted (a fixed token sequence); the tokenizer is real."""

import io
import json
import threading
from contextlib import redirect_stdout

import pytest
from textual.app import App

from nanochat.tokenizer import get_tokenizer
from workbench.tui.services import chat_worker
from workbench.tui.widgets.chat_turn import ChatTurn, ToolCall

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer()


class ScriptedEngine:
    """Yields a fixed token sequence the way nanochat's Engine.generate does (one column per step)."""

    def __init__(self, tokens):
        self.tokens = tokens

    def generate(self, prompt, num_samples=1, max_tokens=None, temperature=1.0, top_k=None, seed=42):
        assert isinstance(prompt, list) and prompt
        for token in self.tokens[:max_tokens]:
            yield [token], [1]


def run_generate(tokenizer, tokens, mode="chat", stop=None, messages=None):
    out = io.StringIO()
    request = {"messages": messages or [{"role": "user", "content": "what is 2+2?"}], "max_tokens": 100}
    with redirect_stdout(out):
        chat_worker.generate(ScriptedEngine(tokens), tokenizer, mode, request, stop or threading.Event())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_text_streams_in_whole_characters(tokenizer):
    text = "héllo wörld ✓ — naïve café"
    events = run_generate(tokenizer, tokenizer.encode(text) + [tokenizer.encode_special("<|assistant_end|>")])
    pieces = [e["text"] for e in events if e["event"] == "token"]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert events[-1]["event"] == "done" and events[-1]["stopped"] is False


def test_calculator_calls_are_their_own_events(tokenizer):
    special = tokenizer.encode_special
    tokens = (tokenizer.encode("Let me compute. ") + [special("<|python_start|>")] + tokenizer.encode("2+2")
              + [special("<|python_end|>"), special("<|output_start|>")] + tokenizer.encode("4")
              + [special("<|output_end|>")] + tokenizer.encode(" So it is 4.") + [special("<|assistant_end|>")]
              + tokenizer.encode("never shown"))
    events = run_generate(tokenizer, tokens)
    kinds = [(e["event"], e.get("text")) for e in events if e["event"] != "done"]
    joined = {}
    for kind, text in kinds:
        joined[kind] = joined.get(kind, "") + text
    assert joined == {"token": "Let me compute.  So it is 4.", "tool": "2+2", "tool_output": "4"}
    order = [k for k, _ in kinds]
    assert order.index("tool") > order.index("token") and order.index("tool_output") > order.index("tool")


def test_stop_ends_the_reply_early(tokenizer):
    stop = threading.Event()
    stop.set()
    events = run_generate(tokenizer, tokenizer.encode("one two three four five six"), stop=stop)
    assert events[-1]["event"] == "done" and events[-1]["stopped"] is True and events[-1]["tokens"] == 1


def test_a_base_model_continues_the_prompt_as_text(tokenizer):
    events = run_generate(tokenizer, tokenizer.encode(" Paris."), mode="completion",
                          messages=[{"role": "user", "content": "The capital of France is"}])
    assert "".join(e["text"] for e in events if e["event"] == "token") == " Paris."


async def _turn_with_a_tool_call():
    class One(App):
        def compose(self):
            yield ChatTurn("assistant")

    app = One()
    async with app.run_test(size=(80, 20)) as pilot:
        turn = app.query_one(ChatTurn)
        for kind, text in [("token", "Let me "), ("token", "compute."), ("tool", "2+"), ("tool", "2"),
                           ("tool_output", "4"), ("token", " It is **4**.")]:
            await turn.append(kind, text)
        await turn.finish("12 tokens in 0.3 s")
        await pilot.pause()
        tool = turn.query_one(ToolCall)
        shown = tool.render().plain
        markdown_parts = len(turn.query("Markdown"))
        message = turn.as_message()
    return shown, markdown_parts, message


def test_the_chat_turn_shows_a_tool_call_apart_from_the_text():
    import asyncio
    shown, markdown_parts, message = asyncio.run(_turn_with_a_tool_call())
    assert shown == "» 2+2  =  4"
    assert markdown_parts == 2  # text before and after the call
    assert message == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me compute."}, {"type": "python", "text": "2+2"},
        {"type": "python_output", "text": "4"}, {"type": "text", "text": " It is **4**."}]}

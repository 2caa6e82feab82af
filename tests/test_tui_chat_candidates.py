"""The chat's top-5 view: the worker reports the five likeliest tokens per sampled step only when asked (the
model is watched only then, and left as it was), and the Chat screen's ctrl+o shows them under the conversation,
one row per token, at 120x40 and at 80x24. The model is a tiny random GPT; the tokenizer is real. Also: an answer
from a model of the learner's own ticks STATUS.md's "First chat" milestone."""

import io
import json
import threading
from contextlib import redirect_stdout

import pytest
import torch

from nanochat.engine import Engine
from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import get_tokenizer
from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp
from workbench.tui.messages import ChatEvent
from workbench.tui.services import chat_worker
from workbench.tui.widgets.candidates import CandidatesPanel

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer()


@pytest.fixture(scope="module")
def engine(tokenizer):
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=64, vocab_size=tokenizer.get_vocab_size(), n_layer=1, n_head=2, n_kv_head=2,
                          n_embd=32))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return Engine(model.eval(), tokenizer)


def events_of(engine, tokenizer, **request):
    out = io.StringIO()
    request = {"messages": [{"role": "user", "content": "The sky is"}], "max_tokens": 8, "temperature": 0.0,
               **request}
    with redirect_stdout(out):
        chat_worker.generate(engine, tokenizer, "completion", request, threading.Event())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_no_candidates_unless_asked(engine, tokenizer):
    events = events_of(engine, tokenizer)
    assert not [e for e in events if e["event"] == "candidates"]
    assert "forward" not in engine.model.__dict__


def test_candidates_for_every_sampled_token(engine, tokenizer):
    events = events_of(engine, tokenizer, top5=True)
    candidates = [e for e in events if e["event"] == "candidates"]
    assert len(candidates) == events[-1]["tokens"] == 8
    for e in candidates:
        ids, probs = [c[0] for c in e["top"]], [c[2] for c in e["top"]]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert e["token"] == ids[0]  # greedy: the likeliest is drawn
        assert e["top"][0][1] == e["text"]
    assert "forward" not in engine.model.__dict__  # the model is given back as it was
    assert [e["event"] for e in events][0] == "candidates"  # a step's candidates come before its text


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))  # no checkpoints: nothing is loaded
    return init_workspace(tmp_path / "ws")


TOP = [[101, " blue", 0.41], [102, " grey", 0.22], [103, " clear", 0.1], [104, " dark", 0.05], [105, " the", 0.02]]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_ctrl_o_shows_the_top5_of_each_token(workspace, size):
    sent = []

    async def send(request):
        sent.append(request)
        return True

    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=size) as pilot:
        await pilot.press("5")
        await pilot.pause()
        chat = app.screen
        app.chat_model.ready, app.chat_model.send = True, send
        chat.query_one("#chat-input").disabled = False
        panel = chat.query_one(CandidatesPanel)
        assert not panel.display
        assert any(b.binding.key == "ctrl+o" for b in app.active_bindings.values() if b.binding.show)  # footer
        assert any(c.title == "Top-5" for c in app.get_system_commands(chat))  # palette (and so ?)

        await pilot.press("ctrl+o")
        assert panel.display and chat.show_candidates
        chat.query_one("#chat-input").focus()
        await pilot.press(*"The sky is", "enter")
        await pilot.pause()
        assert sent and sent[-1]["top5"] is True
        for i, (token, text) in enumerate([(101, " blue"), (999, " purple")]):
            chat.post_message(ChatEvent("candidates", text, {"token": token, "top": TOP}))
            chat.post_message(ChatEvent("token", text))
        chat.post_message(ChatEvent("done", data={"tokens": 2, "seconds": 0.1, "stopped": False}))
        await pilot.pause()
        assert panel.row_count == 2
        first, second = panel.get_row_at(0), panel.get_row_at(1)
        assert str(first[1]) == "␣blue" and str(first[2]) == "␣blue 41%" and "bold" in str(first[2].style)
        assert str(second[1]) == "␣purple ✗" and str(second[6]) == "␣the 2.0%"  # drawn outside the top 5
        # the panel and the message box both fit on the screen
        for widget in (panel, chat.query_one("#chat-input")):
            region = widget.region
            assert region.height > 0 and region.bottom <= size[1] and region.right <= size[0]
        assert panel.region.height >= 6

        await pilot.press("ctrl+o")
        assert not panel.display
        chat.query_one("#chat-input").focus()
        await pilot.press(*"again", "enter")
        await pilot.pause()
        assert sent[-1]["top5"] is False


@pytest.mark.anyio
async def test_an_answer_from_the_learners_model_reaches_the_first_chat_milestone(workspace):
    from workbench.tui.services.runs import Checkpoint
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await pilot.pause()
        chat = app.screen
        mine = Checkpoint("base", "d4", 50, str(app.learner_path))
        chat.checkpoints, app.chat_model.checkpoint = {mine.key: mine}, ("base", "d4", 50)
        chat.post_message(ChatEvent("done", data={"tokens": 3, "seconds": 0.1, "stopped": False}))
        status = workspace.directory / "STATUS.md"
        for _ in range(100):
            await pilot.pause(0.1)
            if "First chat" in status.read_text() and "reached" in status.read_text():
                break
        line = next(ln for ln in status.read_text().splitlines() if "**First chat**" in ln)
        assert line.startswith("- [x]") and "base · d4 · step 50 (learner_gpt.py)" in line

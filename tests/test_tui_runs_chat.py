"""The runs and chat screens with real processes: a tiny base_train run started, tailed and finished from the
runs screen (its checkpoint then listed), a run cancelled, and a chat with that checkpoint streaming tokens
from nanochat's Engine in the chat worker process, stopped mid-reply. Slow: real training on the CPU."""

import asyncio
import os

import pytest

from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp
from workbench.tui.messages import RunExited

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    # a checkpoint folder of our own (the tokenizer cache of the session is reused through a symlink)
    base = tmp_path / "base"
    base.mkdir()
    shared = os.environ["NANOCHAT_BASE_DIR"]
    for cached in ("tokenizer_embedded", "tokenizer"):
        if os.path.isdir(os.path.join(shared, cached)):
            (base / cached).symlink_to(os.path.join(shared, cached))
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(base))
    return init_workspace(tmp_path / "ws")


async def until(pilot, condition, timeout):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.1)


async def test_train_a_tiny_model_then_chat_with_it(workspace):
    exits = []
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30), message_hook=lambda m: isinstance(m, RunExited) and exits.append(m)) \
            as pilot:
        # the chat screen says there is nothing to talk to, and ctrl+t trains a tiny model
        await pilot.press("5")
        await pilot.pause(0.3)
        assert "No checkpoint yet" in str(app.screen.query_one("#chat-empty").render())
        await pilot.press("4")
        runs = app.screen
        runs.query_one("#run-steps").value = "3"
        await pilot.press("s")
        await until(pilot, lambda: exits, timeout=500)
        assert exits[0].returncode == 0
        await pilot.pause(0.5)
        assert app.train_run.steps == [0, 1, 2] and len(app.train_run.losses) == 3
        assert str(runs.query_one("#run-metrics").state) == "finished"
        log = "\n".join(runs.query_one("#run-log").lines)
        assert "saved step 3" in log
        table = runs.query_one("#runs-finished")
        assert table.row_count == 1 and table.get_row_at(0)[0] == "d4"

        # chat with it: pick the checkpoint, send a prompt, tokens stream in until done
        await pilot.press("5")
        chat = app.screen
        await until(pilot, lambda: chat.ready, timeout=120)
        assert chat.mode == "completion"  # a base model continues text
        box = chat.query_one("#chat-input")
        box.focus()
        await pilot.pause()
        assert box.has_focus
        await pilot.press(*"The meaning of", "enter")
        await until(pilot, lambda: len(chat.query("ChatTurn")) == 2 and not chat.generating, timeout=120)
        turns = list(chat.query("ChatTurn"))
        assert [t.role for t in turns] == ["user", "assistant"]
        assert turns[1].as_message()["content"]  # some text came back
        # a second prompt, stopped while it streams (sent straight to the screen: a key press would wait for
        # the whole reply, since pilot waits for the app to be idle)
        box.value = "Once upon"
        await box.action_submit()
        await until(pilot, lambda: chat.reply is not None and chat.reply.parts, timeout=60)
        chat.action_stop()
        await until(pilot, lambda: not chat.generating, timeout=60)
        note = list(chat.query("ChatTurn"))[-1].query("Static").last().render()
        assert "stopped" in str(note)

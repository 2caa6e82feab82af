"""The TUI never blocks on the learner's file: a FIFO in its place (or beside it) gets an answer, and ctrl+q still
quits. Real app (Textual's pilot), real warm worker."""

import asyncio
import os

import pytest

from workbench.course.workspace import init_workspace, learner_file_in
from workbench.tui.app import WorkbenchApp

CHECK_TIMEOUT = 30.0
pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]  # old code: the read never returns


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_the_tui_stays_responsive_when_the_learner_file_is_a_fifo(tmp_path, runner):
    ws = init_workspace(tmp_path / "ws")
    ws.learner_file.unlink()
    os.mkfifo(ws.learner_file)  # a plain read would wait for a writer forever, on the UI's event loop
    os.mkfifo(ws.directory / "other.py")
    assert learner_file_in(ws.directory) == ws.learner_file  # looking for the learner file does not block either
    app = WorkbenchApp(ws.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = asyncio.get_running_loop().time() + 60
        while not any("FIFO" in str(n.message) for n in app._notifications):
            assert asyncio.get_running_loop().time() < deadline, "no answer about the FIFO"
            await pilot.pause(0.05)
        await pilot.press("ctrl+q")
    assert app.return_code in (0, None)

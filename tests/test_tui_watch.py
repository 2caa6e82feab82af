"""The workspace watcher: native events and polling both report saves (two saves within one second included),
the start-up probe proves events arrive, and the app falls back to polling, and says so, when they do not."""

import asyncio
import time

import pytest

from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp
from workbench.tui.watcher import WorkspaceWatcher

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def collect_saves(directory, polling: bool, writes: list[tuple[float, str]]):
    watcher = WorkspaceWatcher(directory, {"learner_gpt.py"}, force_polling=polling)
    seen: list[set[str]] = []

    async def consume():
        async for names in watcher.changes():
            seen.append(names)

    task = asyncio.create_task(consume())
    assert await watcher.probe(1.0), "the probe's own event never arrived"
    assert not watcher.probe_path.exists()
    for delay, text in writes:
        await asyncio.sleep(delay)
        count = len(seen)
        (directory / "learner_gpt.py").write_text(text)
        deadline = time.monotonic() + 2
        while len(seen) == count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(seen) > count, f"the save of {text!r} was not reported"
    watcher.stop()
    await task
    return seen


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
async def test_every_save_is_reported_even_two_within_a_second(tmp_path, polling):
    (tmp_path / "learner_gpt.py").write_text("a")
    (tmp_path / "other.py").write_text("not watched")
    seen = await collect_saves(tmp_path, polling, [(0.0, "bb"), (0.25, "ccc"), (0.25, "dddd")])
    assert all(names == {"learner_gpt.py"} for names in seen)


async def test_the_app_polls_and_says_so_when_the_probe_gets_no_event(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    app = WorkbenchApp(ws.directory, run_checks=False, probe_timeout=0.0)  # no event can arrive in 0 s
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        deadline = time.monotonic() + 10
        while "polling" not in app.watch_mode and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert app.watch_mode == "watching: polling (no file events arrived within 1 s)"
        assert any("polling instead" in n.message for n in app._notifications)
        # and the polling watcher does report a STATUS.md edited outside
        text = ws.status_file.read_text().replace("- [ ] `norm`", "- [x] `norm`")
        ws.status_file.write_text(text)
        deadline = time.monotonic() + 5
        while not any(("norm", True) in p.items for p in app.checklist.phases) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert any(("norm", True) in p.items for p in app.checklist.phases)

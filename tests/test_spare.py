"""The warm-spare child strategy (workbench/check/spare.py) as a user meets it: how it is chosen, that a spare
never outlives a dead worker, that the strategy shows in `check --json`, and that paths with spaces and
non-ASCII characters are checked and watched. The check suite itself runs under both strategies
(CHILD_STRATEGIES in tests/test_runner.py and tests/test_checks.py)."""

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from workbench.check.client import Runner, RunnerError
from workbench.check.spare import CHILD_ENV, choose_strategy, platform_default
from workbench.tui.watcher import WorkspaceWatcher

ROOT = pathlib.Path(__file__).resolve().parents[1]
SKELETON = (ROOT / "workbench" / "course" / "templates" / "learner_gpt.py").read_text()
LOOPING = (ROOT / "nanochat" / "gpt.py").read_text().replace(
    "    def init_weights(self):\n", "    def init_weights(self):\n        while True:\n            pass\n", 1)
ODD_DIR = "a folder with späces, ü and 日本"
ODD_NAME = "my gpt é.py"


def test_strategy_flag_beats_the_environment_which_beats_the_platform(monkeypatch):
    monkeypatch.delenv(CHILD_ENV, raising=False)
    assert choose_strategy() == platform_default() == ("fork" if sys.platform.startswith("linux") else "spawn")
    monkeypatch.setenv(CHILD_ENV, "spawn")
    assert choose_strategy() == "spawn"
    assert choose_strategy("fork") == "fork"
    monkeypatch.setenv(CHILD_ENV, "thread")
    with pytest.raises(ValueError, match="fork or spawn"):
        choose_strategy()


def test_check_with_a_bad_strategy_in_the_environment_is_a_usage_error(tmp_path):
    learner = tmp_path / "learner_gpt.py"
    learner.write_text(SKELETON)
    proc = subprocess.run([sys.executable, "-m", "workbench", "check", str(learner)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=dict(os.environ, **{CHILD_ENV: "thread"}))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"nanochat-workbench check: error: ${CHILD_ENV}: unknown child strategy 'thread' (choose fork or spawn)"]


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (Linux /proc; the test is skipped elsewhere)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = pathlib.Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != b"Z":
                found.append(int(name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the spares through /proc")
def test_spares_die_with_their_worker_even_mid_check(tmp_path):
    """The spare watches its parent through its stdin pipe: no PR_SET_PDEATHSIG is involved (macOS has none)."""
    loop = tmp_path / "loop.py"
    loop.write_text(LOOPING)
    r = Runner(timeout=60, child="spawn")
    try:
        assert r.wait_ready()["child"] == "spawn"
        run_id, future = r.submit(loop)
        deadline = time.monotonic() + 60
        while not (r.running and r.running.get("id") == run_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        worker = r.info["pid"]
        checking = r.running["pid"]
        spares = children_of(worker)
        assert checking in spares and len(spares) == 2  # the check in flight and the next one's spare, warming
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(RunnerError):
            future.result(timeout=20)
        deadline = time.monotonic() + 20
        while any(map(alive, spares)) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [pid for pid in spares if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, "a spare outlived its worker"
    finally:
        r.close()


def test_check_json_names_the_strategy_for_a_path_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / ODD_DIR
    folder.mkdir()
    learner = folder / ODD_NAME
    learner.write_text(SKELETON, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "workbench", "check", "--json", "--steps", "1", "--child", "spawn",
                           str(learner)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["timings"]["child"] == "spawn"
    assert result["file"] == str(learner)
    assert result["next_todo"]["qualname"] == "GPT.__init__" and result["next_todo"]["file"] == str(learner)


@pytest.mark.anyio
@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
async def test_saves_are_seen_in_a_folder_with_spaces_and_non_ascii(tmp_path, polling):
    folder = tmp_path / ODD_DIR
    folder.mkdir()
    learner = folder / ODD_NAME
    learner.write_text("a", encoding="utf-8")
    watcher = WorkspaceWatcher(folder, {ODD_NAME}, force_polling=polling)
    seen: list[set[str]] = []
    task = asyncio.create_task(collect(watcher, seen))
    try:
        assert await watcher.probe(2.0), "the probe's own event never arrived"
        learner.write_text("bb", encoding="utf-8")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert seen and seen[0] == {ODD_NAME}
    finally:
        watcher.stop()
        await task


async def collect(watcher: WorkspaceWatcher, seen: list) -> None:
    async for names in watcher.changes():
        seen.append(names)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_status_bar_says_how_the_check_process_was_started():
    from textual.app import App

    from workbench.tui.widgets.run_state import RunState

    class Bar(App):
        def compose(self):
            yield RunState()

    app = Bar()
    async with app.run_test(size=(120, 5)) as pilot:
        bar = app.query_one(RunState)
        bar.check_child, bar.checking = "spawn", True
        await pilot.pause()
        assert "checking…" in bar.render().plain and "(spawn child)" in bar.render().plain
        bar.checking = False
        await pilot.pause()
        assert "spawn" not in bar.render().plain  # idle: the bar has other things to say

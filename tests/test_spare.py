"""The warm-spare child strategy (workbench/check/spare.py) as a user meets it: how it is chosen, that a spare
never outlives a dead worker, that the strategy shows in `check --json`, and that paths with spaces and
non-ASCII characters are checked and watched. The check suite itself runs under both strategies
(CHILD_STRATEGIES in tests/test_runner.py and tests/test_checks.py)."""

import asyncio
import json
import os
import pathlib
import shutil
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
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
LOOPING = REFERENCE.replace(
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


def test_a_check_that_arrives_while_the_spare_warms_up_is_judged_as_any_other(tmp_path):
    """The spare warms up by running the reference through the checks; a check that arrives meanwhile stops
    the warm-up and must find everything as it would have been without it (same verdicts, its own output)."""
    reference = tmp_path / "gpt.py"
    reference.write_text(REFERENCE)
    skeleton = tmp_path / "learner_gpt.py"
    skeleton.write_text(SKELETON)
    r = Runner(timeout=120, child="spawn")
    try:
        r.wait_ready()
        result = r.run_sync(reference)  # the first spare has only just been told to warm up
        assert result["timings"]["spare_hot"] is False
        assert result["ok"] is True and [c["qualname"] for c in result["components"] if c["status"] != "pass"] == []
        assert result["stdout_tail"] == ""
        assert r.run_sync(skeleton)["next_todo"]["qualname"] == "GPT.__init__"
    finally:
        r.close()


def test_saves_faster_than_a_spare_starts_wait_for_it_and_the_newest_one_wins(tmp_path):
    """A save that finds the next spare still starting waits for it without blocking the worker, and a newer
    save takes its place (it is cancelled, no spare is spent on it); the newest gets its answer."""
    from workbench.check.client import CheckCancelled

    files = {}
    for name, text in (("loop", LOOPING), ("first", SKELETON), ("second", REFERENCE)):
        files[name] = tmp_path / f"{name}.py"
        files[name].write_text(text)
    r = Runner(timeout=120, child="spawn")
    try:
        r.wait_ready()
        loop_id, looping = r.submit(files["loop"])
        deadline = time.monotonic() + 120
        while not (r.running and r.running.get("id") == loop_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        _, first = r.submit(files["first"])  # the loop is cancelled; the next spare is still importing torch
        second_id, second = r.submit(files["second"])  # takes the waiting save's place
        with pytest.raises(CheckCancelled):
            looping.result(timeout=60)
        with pytest.raises(CheckCancelled):
            first.result(timeout=60)
        result = second.result(timeout=300)
        assert result["ok"] is True and result["timings"]["spare_wait_s"] > 0
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


@pytest.mark.skipif(not os.path.isdir("/proc") or not shutil.which("ps"), reason="compares /proc with ps")
def test_without_proc_the_process_tree_and_states_come_from_ps():
    """Where there is no /proc (macOS) the worker's sweeps and its stopped-check detection read `ps`: on Linux
    both sources must give the same tree below a process, and `ps` must see a stopped one as stopped."""
    from workbench.check import procs

    tree = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, "
                             "'-c', 'import time; time.sleep(60)'], start_new_session=True); time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while len(procs.descendants(tree.pid, procs.proc_table())) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        below = procs.descendants(tree.pid, procs.proc_table())
        assert len(below) == 1  # the grandchild, in a session of its own
        assert procs.descendants(tree.pid, procs.ps_table()) == below
        os.kill(below[0], signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while procs.ps_table().get(below[0], (0, ""))[1] != "T" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert procs.ps_table()[below[0]][1] == "T" == procs.process_state(below[0])
        from workbench.check.worker import own_address_space  # /proc's figure and ps's agree (page rounding)
        assert abs(procs.virtual_size(os.getpid()) - own_address_space()) < 64 << 20
        os.kill(below[0], signal.SIGKILL)
    finally:
        tree.kill()
        tree.wait()


def test_the_spare_ends_what_its_check_started_before_it_exits(tmp_path):
    """Where the worker is no subreaper (not Linux), a process the check started in a session of its own would
    be re-parented to init when the check exits: the spare kills it first (spare.end_descendants, run at the end
    of every check and from the learner's os._exit). Here in a plain process, no subreaper above it."""
    marker = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
              f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
              "from workbench.check.spare import end_descendants\n"
              "end_descendants()\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=ROOT)
    grandchild = int(marker.read_text())
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:  # killed; init reaps it
        time.sleep(0.05)
    if alive(grandchild):
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("the check's grandchild outlived the spare")

"""The track runner's warm spare (workbench/tracks/runner.py + child.py), with real child processes.

A check takes a child that imported torch before the request came, and the next spare starts after it; a timeout
still kills the child's whole group, a crash is still the learner's, and a runner killed while its spare waits or
while a check runs leaves no process behind.
"""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.tracks import STUCK, pid_alive, wait_for

from workbench.check.result import Status
from workbench.tracks import runner
from workbench.tracks.optimizer.spec import ADAMW
from workbench.tracks.runner import check_track_file, prestart, run_track_check, spare_child

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_spare_left():
    yield
    runner.SPARES.close()


def adamw_with(tmp_path: Path, top: str = "") -> Path:
    """nanochat/adamw.py (a check of well under a second) with `top` run at import time."""
    anchor = "import torch.distributed as dist\n"
    path = tmp_path / "learner_adamw.py"
    path.write_text(ADAMW.reference_path().read_text().replace(anchor, anchor + top, 1))
    return path


def ready_spare() -> runner.Child:
    """The spare, once it has imported everything (a request now waits for nothing)."""
    assert wait_for(lambda: spare_child() is not None and spare_child().ready()), "the spare never got ready"
    return spare_child()


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_second_async_check_takes_a_child_started_before_it(tmp_path):
    path = adamw_with(tmp_path)
    first = asyncio.run(run_track_check(str(path)))
    assert first["ok"] and first["timings"]["child"] == "subprocess"
    spare = ready_spare()  # started once the first check was over
    assert spare.proc.pid != first["timings"]["child_pid"]
    second = asyncio.run(run_track_check(str(path)))
    timings = second["timings"]
    assert second["ok"] and timings["child"] == "spare" and timings["child_pid"] == spare.proc.pid
    assert timings["child_ready_s"] == 0.0 and timings["spare_age_s"] > 0
    assert wait_for(lambda: not pid_alive(spare.proc.pid)) and not os.path.exists(spare.folder)
    assert spare_child() is not None and spare_child().proc.pid != spare.proc.pid  # the next one


def test_a_one_shot_check_leaves_no_spare(tmp_path):
    result = check_track_file(str(adamw_with(tmp_path)))
    assert result["ok"] and result["timings"]["child"] == "subprocess" and spare_child() is None
    assert not pid_alive(result["timings"]["child_pid"])


def test_a_warm_check_that_times_out_kills_the_whole_group(tmp_path):
    prestart()
    ready_spare()
    path = adamw_with(tmp_path, STUCK)
    result = check_track_file(str(path), timeout=5)
    assert result["timings"]["child"] == "spare" and result["timed_out"] and result["error"]["type"] == "Timeout"
    assert result["error"]["line"] in (line_of(path, "while True:"), line_of(path, "pass  # stuck here"))
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    assert wait_for(lambda: not pid_alive(sleeper)), "the learner's own child process outlived the check"


def test_a_crash_in_a_warm_child_is_the_learners_and_its_prints_come_back_alone(tmp_path):
    prestart()
    ready_spare()
    crash = ("import os, signal, sys\nprint(input.__name__, sys.stdin.read() == '')\n"
             "os.kill(os.getpid(), signal.SIGSEGV)\n")
    path = adamw_with(tmp_path, "print('hello from the learner')\n" + crash)
    result = check_track_file(str(path))
    assert result["timings"]["child"] == "spare"
    assert result["error"]["type"] == "Crash" and result["error"]["signal"] == "SIGSEGV"
    assert result["error"]["line"] == line_of(path, "signal.SIGSEGV)")
    assert {c["status"] for c in result["components"]} == {Status.NOT_REACHED}
    assert result["stdout_tail"].startswith("hello from the learner\ninput True\n")  # stdin is /dev/null


PARENT = """
import sys
from workbench.tracks.runner import check_track_file, prestart, spare_child
prestart()
print(spare_child().proc.pid, spare_child().folder, flush=True)
if len(sys.argv) > 1:
    check_track_file(sys.argv[1], timeout=600)
else:
    sys.stdin.read()  # waits until the test kills this process
"""


def start_parent(*args: str) -> tuple[subprocess.Popen, int, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    pid, folder = parent.stdout.readline().split()
    return parent, int(pid), folder


def test_a_runner_killed_while_its_spare_waits_leaves_no_child(tmp_path):
    parent, spare, folder = start_parent()
    assert wait_for(lambda: os.path.exists(os.path.join(folder, "ready")))
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not pid_alive(spare), 30), "the spare outlived its runner"
    assert wait_for(lambda: not os.path.exists(folder), 10)


def test_a_runner_killed_during_a_check_leaves_no_process_of_the_learners(tmp_path):
    parent, child, _ = start_parent(str(adamw_with(tmp_path, STUCK)))
    assert wait_for(lambda: (tmp_path / "sleeper.pid").exists())
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert wait_for(lambda: not pid_alive(child), 30), "the check's child outlived its runner"
    assert wait_for(lambda: not pid_alive(sleeper), 30), "the learner's process outlived the runner"

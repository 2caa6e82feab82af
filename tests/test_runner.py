"""The runner as its users see it: the warm worker's Python API (async and blocking, cancellation, surviving
its own death) and `nanochat-workbench check` (JSON schema, report, exit codes). Real processes throughout."""

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from workbench.check.client import CheckCancelled, Runner, RunnerError

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
SKELETON = (ROOT / "workbench" / "course" / "templates" / "learner_gpt.py").read_text()
CHILD_STRATEGIES = ("fork", "spawn")  # every runner test once per child strategy (tests/conftest.py)
LOOPING = REFERENCE.replace("    def init_weights(self):\n", "    def init_weights(self):\n        while True:\n            pass\n", 1)


def assert_schema(result):
    for key, kind in (("file", str), ("ok", bool), ("stage", str), ("components", list), ("shapes", list),
                      ("losses", list), ("stdout_tail", str), ("timings", dict)):
        assert isinstance(result[key], kind), key
    assert result["stage"] in ("import", "construct", "init", "forward", "backward", "optimize", "train", "generate", "done")
    assert "next_todo" in result and "error" in result
    if result["next_todo"]:
        assert set(result["next_todo"]) >= {"qualname", "phase", "message", "file", "line"}
    if result["error"]:
        assert set(result["error"]) >= {"type", "message", "file", "line", "traceback"}
    for c in result["components"]:
        assert set(c) >= {"qualname", "phase", "status", "detail", "max_abs_diff"}
        assert c["status"] in ("pass", "mismatch", "error", "todo", "skipped")
        assert c["detail"]
    for s in result["shapes"]:
        assert set(s) >= {"name", "kind", "inputs", "output", "dtype", "nonfinite"} and s["kind"] in ("module", "function")
    assert isinstance(result["timings"]["total_s"], float)


def wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    """Poll `condition()` until it is truthy (returned) or `timeout` passes (the test fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


async def async_wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def check_pid(runner, run_id=None):
    """The pid of the check process in flight (of run `run_id` when given), once the worker has forked it."""
    running = runner.running or {}
    return running.get("pid") if run_id is None or running.get("id") == run_id else None


def test_async_run_returns_the_result_dict(runner, write):
    result = asyncio.run(runner.run(write("learner_gpt.py", SKELETON)))
    assert_schema(result)
    assert result["next_todo"]["qualname"] == "GPT.__init__"


def test_a_newer_run_cancels_the_one_in_flight(runner, write):
    looping, skeleton = write("loop.py", LOOPING), write("skel.py", SKELETON)

    async def scenario():
        first = asyncio.ensure_future(runner.run(looping))
        pid = await async_wait_for(lambda: check_pid(runner), what="the looping check to start")
        second = await runner.run(skeleton)
        with pytest.raises(CheckCancelled):
            await first
        return second, pid

    result, pid = asyncio.run(scenario())
    assert result["next_todo"]["qualname"] == "GPT.__init__"
    wait_for(lambda: not alive(pid), timeout=10, what=f"the cancelled check process {pid} to be gone")


def test_cancelling_the_awaiting_task_kills_the_check(runner, write):
    looping, skeleton = write("loop.py", LOOPING), write("skel.py", SKELETON)

    async def scenario():
        task = asyncio.ensure_future(runner.run(looping))
        pid = await async_wait_for(lambda: check_pid(runner), what="the looping check to start")
        task.cancel()  # what Textual does to an exclusive worker when a newer save arrives
        with pytest.raises(asyncio.CancelledError):
            await task
        await async_wait_for(lambda: not alive(pid), timeout=10, what=f"the check process {pid} to be killed")
        return await runner.run(skeleton)

    assert asyncio.run(scenario())["stage"] == "construct"


def test_cancel_method_stops_the_run(runner, write):
    run_id, future = runner.submit(write("loop.py", LOOPING))
    pid = wait_for(lambda: check_pid(runner, run_id), what="the looping check to start")
    assert alive(pid)
    runner.cancel()
    with pytest.raises(CheckCancelled):
        future.result(timeout=10)
    wait_for(lambda: not alive(pid), timeout=10, what=f"the cancelled check process {pid} to be gone")


def test_the_result_names_the_child_strategy(runner, child_strategy, write):
    from workbench.check.spare import choose_strategy
    result = runner.run_sync(write("learner_gpt.py", SKELETON))
    assert result["timings"]["child"] == runner.info["child"] == choose_strategy(child_strategy)


def test_learner_prints_come_back(runner, write):
    text = REFERENCE.replace("    def init_weights(self):\n",
                             "    def init_weights(self):\n        print('hello from init_weights')\n", 1)
    result = runner.run_sync(write("learner_gpt.py", "print('imported!')\n" + text))
    assert "imported!" in result["stdout_tail"] and "hello from init_weights" in result["stdout_tail"]


def test_a_dead_worker_fails_the_run_and_is_replaced(write, child_strategy):
    r = Runner(timeout=60, child=child_strategy)
    try:
        r.wait_ready()
        run_id, future = r.submit(write("loop.py", LOOPING))
        child = wait_for(lambda: check_pid(r, run_id), what="the looping check to start")
        os.kill(r.info["pid"], signal.SIGKILL)
        with pytest.raises(RunnerError):
            future.result(timeout=20)
        # the check process, stuck in the learner's loop, does not outlive its worker
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(child):
            os.kill(child, signal.SIGKILL)
            pytest.fail("the check process outlived its worker")
        result = r.run_sync(write("skel.py", SKELETON))  # a fresh worker warms up and runs it
        assert result["next_todo"]["qualname"] == "GPT.__init__"
    finally:
        r.close()


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "workbench.cli", "check", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_cli_json_on_the_skeleton_exits_1(write):
    proc = cli(write("learner_gpt.py", SKELETON), "--json", "--steps", "1")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert_schema(result)
    assert result["ok"] is False and result["next_todo"]["qualname"] == "GPT.__init__"


def test_cli_report_on_the_reference_exits_0(write):
    proc = cli(write("gpt.py", REFERENCE), "--steps", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "OK gpt.py" in out and "KV-cache decoding" in out and "Traceback" not in out
    assert "loss (one batch" in out


@pytest.mark.parametrize("args, message", [
    (["does_not_exist.py"], "does not exist"),
    (["."], "is a directory"),
    (["x.py", "--steps", "0"], "expected a positive integer, got 0"),
    (["x.py", "--timeout", "soon"], "expected a positive number, got 'soon'"),
    (["x.py", "--bogus"], "unrecognized arguments"),
])
def test_cli_usage_errors_exit_2(args, message, tmp_path):
    (tmp_path / "x.py").write_text("")
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "check", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_warming_up_reports_its_stages_in_order_then_clears_them():
    """What the TUI's first-start progress bar shows: the worker's stages, in order, gone once it is warm."""
    seen = []
    r = Runner(timeout=60, start=False, on_progress=seen.append)  # called with every stage, then None
    try:
        r.start()
        r.wait_ready(timeout=300)
        assert r.warm and r.warmup_progress is None
        wait_for(lambda: seen and seen[-1] is None, timeout=5, what="the callback's final None")
        stages = [(p["done"], p["stage"]) for p in seen[:-1]]
        assert stages[:2] == [(0, "starting the check worker"), (0, "importing torch")]
        assert [done for done, _ in stages] == sorted(done for done, _ in stages)
        assert all(0 <= done < p["total"] == 4 for (done, _), p in zip(stages, seen))
        assert len({stage for _, stage in stages}) == len(stages) >= 4  # each stage reported once
    finally:
        r.close()

"""Learner files that misbehave on purpose: each is reported for what it is, and the caller (this test process)
and the warm worker both survive to run the next check. Real worker, real fork, real signals."""

import json
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
CHILD_STRATEGIES = ("fork", "spawn")  # the same guarantees from a forked child and a warm spare (tests/conftest.py)
# Each check runs under the default timeout: a stuck one is caught within seconds by the stall detection, so no test
# depends on the whole check finishing inside a short limit on a loaded machine. The timeout test sets its own.
TIMEOUT = 4.0


def check(runner, tmp_path, text, name="learner_gpt.py", **kw):
    path = tmp_path / name
    path.write_text(text)
    result = runner.run_sync(path, **kw)
    assert result["ok"] is False
    return result


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_infinite_loop_times_out_with_stage_and_where(runner, tmp_path):
    text = REFERENCE.replace("        x = self.c_fc(x)\n", "        x = self.c_fc(x)\n        while True:\n            pass\n", 1)
    result = check(runner, tmp_path, text, timeout=TIMEOUT)
    error = result["error"]
    assert result["timed_out"] is True and error["type"] == "Timeout"
    assert result["stage"] == "forward"
    assert error["qualname"] == "MLP.forward"
    assert error["line"] in (line_of(text, "while True"), line_of(text, "while True") + 1)
    assert f"timed out after {TIMEOUT:g} s in stage forward" in error["message"] and "MLP.forward" in error["message"]


def test_segfault_via_ctypes_is_reported_with_the_signal(runner, tmp_path):
    text = "import ctypes\n" + REFERENCE.replace(
        "    def init_weights(self):\n", "    def init_weights(self):\n        ctypes.string_at(0)\n", 1)
    result = check(runner, tmp_path, text)
    error = result["error"]
    assert error["type"] == "Crash" and error["signal"] == "SIGSEGV"
    assert result["stage"] == "init"
    assert error["qualname"] == "GPT.init_weights" and error["line"] == line_of(text, "ctypes.string_at(0)")
    assert "segmentation fault" in error["message"]


def test_sys_exit_is_reported_not_obeyed(runner, tmp_path):
    text = "import sys\nsys.exit(0)\n" + REFERENCE
    result = check(runner, tmp_path, text)
    assert result["stage"] == "import"
    assert result["error"]["type"] == "SystemExit" and result["error"]["line"] == 2
    assert "sys.exit(0)" in result["error"]["message"]
    assert all(c["status"] == "skipped" for c in result["components"])


def test_os_exit_and_abort_are_reported_with_exit_code_or_signal(runner, tmp_path):
    text = REFERENCE.replace("    def get_device(self):\n", "    def get_device(self):\n        import os; os._exit(3)\n", 1)
    result = check(runner, tmp_path, text, name="osexit.py")
    assert result["error"]["type"] == "Exit" and result["error"]["exit_code"] == 3
    assert result["error"]["qualname"] == "GPT.get_device"
    result = check(runner, tmp_path, "import os\nos.abort()\n" + REFERENCE, name="abort.py")
    assert result["error"]["type"] == "Crash" and result["error"]["signal"] == "SIGABRT"
    assert result["stage"] == "import" and result["error"]["line"] == 2


def test_keyboard_interrupt_raised_by_the_code_is_an_error_with_its_line(runner, tmp_path):
    text = REFERENCE.replace("    def init_weights(self):\n", "    def init_weights(self):\n        raise KeyboardInterrupt\n", 1)
    result = check(runner, tmp_path, text)
    assert result["stage"] == "init" and result["error"]["type"] == "KeyboardInterrupt"
    assert result["error"]["line"] == line_of(text, "raise KeyboardInterrupt")


def test_50_gb_allocation_is_out_of_memory(runner, tmp_path):
    text = REFERENCE.replace("        self.config = config\n",
                             "        self.config = config\n        self.big = torch.empty(50 * 10**9, dtype=torch.uint8)\n", 1)
    result = check(runner, tmp_path, text)
    assert result["stage"] == "construct"
    assert result["error"]["type"] == "OutOfMemory"
    assert "out of memory" in result["error"]["message"] and result["error"]["qualname"] == "GPT.__init__"
    text = "blob = bytearray(50 * 10**9)\n" + REFERENCE
    result = check(runner, tmp_path, text, name="bytes.py")
    assert result["error"]["type"] == "OutOfMemory" and result["error"]["line"] == 1


def test_a_million_printed_lines_are_captured_and_capped(runner, tmp_path):
    text = "for i in range(1_000_000):\n    print('line', i)\n" + REFERENCE
    path = tmp_path / "prints.py"
    path.write_text(text)
    result = runner.run_sync(path, timeout=120)
    assert result["stdout_lines"] == 1_000_000
    tail = result["stdout_tail"]
    assert tail.rstrip().endswith("line 999999")
    assert "earlier line(s) of output not kept" in tail
    assert len(tail) < 64 * 1024
    assert result["ok"] is True  # printing is allowed; the model itself is the reference


def test_prints_before_a_crash_are_kept(runner, tmp_path):
    text = "import ctypes\nprint('about to crash')\nctypes.string_at(0)\n" + REFERENCE
    result = check(runner, tmp_path, text)
    assert "about to crash" in result["stdout_tail"]


def test_syntax_error_points_at_file_and_line(runner, tmp_path):
    text = REFERENCE.replace("def norm(x):", "def norm(x)", 1)
    result = check(runner, tmp_path, text)
    error = result["error"]
    assert result["stage"] == "import" and error["type"] == "SyntaxError"
    assert error["file"] == str(tmp_path / "learner_gpt.py") and error["line"] == line_of(text, "def norm(x)")


def test_import_of_a_missing_package_points_at_the_import(runner, tmp_path):
    text = "import torch\nimport definitely_not_a_package_xyz\n" + REFERENCE
    result = check(runner, tmp_path, text)
    error = result["error"]
    assert result["stage"] == "import" and error["type"] == "ModuleNotFoundError"
    assert error["line"] == 2 and "definitely_not_a_package_xyz" in error["message"]


def test_nan_is_traced_to_the_first_module_that_makes_it(runner, tmp_path):
    text = REFERENCE.replace("        x = F.relu(x).square()\n", "        x = F.relu(x).square() * float('nan')\n", 1)
    result = check(runner, tmp_path, text)
    assert result["error"]["type"] == "NonFinite" and result["stage"] == "forward"
    first = result["first_nonfinite"]
    assert first["name"] == "transformer.h.0.mlp" and first["type"] == "MLP"
    assert "transformer.h.0.mlp" in result["error"]["message"]


def test_caller_and_worker_survive_all_of_it(runner, write):
    pid = runner.info["pid"]
    result = runner.run_sync(write("gpt.py", REFERENCE), timeout=120)
    assert result["ok"] is True, result["error"]
    assert runner.info["pid"] == pid  # the same warm worker did every check in this module
    os.kill(pid, 0)  # and it is still alive


def test_endless_loop_is_named_long_before_the_default_timeout(runner, tmp_path):
    # a plain check (the default 60 s): the worker samples the stack of a child that stopped sending progress
    text = REFERENCE.replace("    def get_device(self):\n", "    def get_device(self):\n        while True:\n            pass\n", 1)
    result = check(runner, tmp_path, text)
    error = result["error"]
    assert error["type"] == "Timeout" and result["timed_out"] is True
    assert error["message"].startswith("stuck in stage") and "GPT.get_device" in error["message"]
    assert error["qualname"] == "GPT.get_device"
    assert error["line"] in (line_of(text, "while True"), line_of(text, "while True") + 1)
    assert result["timings"]["total_s"] < 30


def test_sigstop_is_named_and_rows_after_it_are_not_reached(runner, tmp_path):
    text = REFERENCE.replace("    def init_weights(self):\n", "    def init_weights(self):\n"
                             "        import os, signal; os.kill(os.getpid(), signal.SIGSTOP)\n", 1)
    result = check(runner, tmp_path, text)
    assert result["error"]["type"] == "Crash" and result["error"]["signal"] == "SIGSTOP"
    assert result["error"]["qualname"] == "GPT.init_weights" and result["stage"] == "init"
    assert {c["status"] for c in result["components"]} == {"not reached"}


def test_an_exit_before_training_is_never_called_a_workbench_bug(runner, tmp_path):
    text = REFERENCE.replace("    def init_weights(self):\n", "    def init_weights(self):\n        import os; os._exit(3)\n", 1)
    result = check(runner, tmp_path, text)
    assert result["error"]["type"] == "Exit"
    rows = {c["qualname"]: c for c in result["components"]}
    for name in ("loss at init", "training", "GPT.forward"):
        assert rows[name]["status"] == "not reached" and rows[name]["detail"].startswith("not reached"), rows[name]
    assert result["lead"] is None  # nothing the learner has to fix comes before the exit
    assert "workbench bug" not in json.dumps(result)

"""The checker always answers, nothing of a check outlives it, and a pass means the learner's own code did it.
Real worker, real fork: learner files that hang the reader, leave processes behind, nest too deep, borrow the
reference's objects, delete their parameters, or forge the check's events."""

import pathlib
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
CHECK_TIMEOUT = 30.0
CHILD_STRATEGIES = ("fork", "spawn")  # the same answers from a forked child and a warm spare (tests/conftest.py)
ANSWER_S = 150.0  # a worker that has not answered by then is hung: the test fails instead of waiting forever


def answer(runner, path, **kw):
    _, future = runner.submit(path, **kw)
    return future.result(timeout=ANSWER_S)


def check(runner, tmp_path, text, name="learner_gpt.py", **kw):
    path = tmp_path / name
    path.write_text(text)
    return answer(runner, path, **kw)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- the checker always answers ----------------------------------------------------------------------------------


def test_a_file_that_replaces_itself_with_a_fifo_gets_an_answer(runner, tmp_path):
    text = "import os\nos.unlink(__file__)\nos.mkfifo(__file__)\n" + REFERENCE
    started = time.monotonic()
    result = check(runner, tmp_path, text)
    assert time.monotonic() - started < CHECK_TIMEOUT  # the worker did not block opening the FIFO
    assert isinstance(result["components"], list)
    assert answer(runner, tmp_path / "learner_gpt.py")["ok"] is False  # the FIFO itself: refused, answered


def test_a_deeply_nested_expression_is_the_learners_error_not_a_workbench_bug(runner, tmp_path):
    result = check(runner, tmp_path, "x = " + "-" * 200_000 + "1\n" + REFERENCE)
    assert result["ok"] is False and result["stage"] == "import"
    assert result["error"]["type"] in ("RecursionError", "MemoryError", "OutOfMemory", "SyntaxError")
    assert "workbench bug" not in result["error"]["message"]
    assert result["components"], "the components are listed, each not reached"


# -- nothing survives a check ------------------------------------------------------------------------------------


def test_a_grandchild_in_its_own_session_does_not_outlive_the_check(runner, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    text = ("import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n" + REFERENCE)
    check(runner, tmp_path, text)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the learner's grandchild survived the check"


def test_a_double_forked_daemon_does_not_outlive_the_check(runner, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    text = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
            f"        os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
            "        time.sleep(300)\n"
            "    os._exit(0)\n"
            # wait for the daemon to have run: under load it may not have when the check ends
            f"while not os.path.exists({str(pid_file)!r}):\n"
            "    time.sleep(0.02)\n" + REFERENCE)
    check(runner, tmp_path, text)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the learner's daemon survived the check"


# -- a pass means the learner's code did it ----------------------------------------------------------------------

SKELETON = (ROOT / "workbench" / "course" / "templates" / "learner_gpt.py").read_text()


def _passed(result):
    return [c["qualname"] for c in result["components"] if c["status"] == "pass"]


def test_the_reference_imported_as_the_learner_file_fails_plainly(runner, tmp_path):
    result = check(runner, tmp_path, "from nanochat.gpt import *\n")
    assert result["ok"] is False and _passed(result) == []
    assert "GPT is nanochat's reference, not yours" in result["error"]["message"]


def test_a_skeleton_that_rebinds_the_reference_at_its_end_fails_plainly(runner, tmp_path):
    result = check(runner, tmp_path, SKELETON + "\nfrom nanochat.gpt import GPT, GPTConfig, Block, norm\n")
    assert result["ok"] is False and _passed(result) == []
    assert "GPT is nanochat's reference, not yours" in result["error"]["message"]


def test_a_method_rebound_to_the_reference_fails_its_row(runner, tmp_path):
    text = REFERENCE + "\nimport nanochat.gpt\nMLP.forward = nanochat.gpt.MLP.forward\n"
    result = check(runner, tmp_path, text, name="own.py")
    row = next(c for c in result["components"] if c["qualname"] == "MLP.forward")
    assert result["ok"] is False and row["status"] != "pass"
    assert "MLP.forward is nanochat's reference, not yours" in (row.get("detail") or "") + result["error"]["message"]


def test_an_init_rule_that_deletes_the_parameters_fails(runner, tmp_path):
    text = REFERENCE.replace("    def _init_weights(self, module):\n",
                             "    def _init_weights(self, module):\n        module._parameters.clear()\n        return\n", 1)
    result = check(runner, tmp_path, text)
    row = next(c for c in result["components"] if c["qualname"] == "GPT._init_weights")
    assert row["status"] == "mismatch" and "is gone after _init_weights" in row["detail"]
    assert result["ok"] is False


# a model whose optimizers never step: its loss cannot go down, whatever the events say
NO_TRAINING = '''
_own_setup = GPT.setup_optimizers
def _setup_without_steps(self, *args, **kwargs):
    optimizers = _own_setup(self, *args, **kwargs)
    for opt in optimizers:
        opt.step = lambda *a, **k: None
    return optimizers
GPT.setup_optimizers = _setup_without_steps
'''
FIND_CHANNEL = '''
import gc
def _channel():
    return next(o for o in gc.get_objects() if type(o).__name__ == "Channel" and hasattr(o, "send"))
'''


def test_losses_rewritten_in_the_childs_channel_do_not_make_training_pass(runner, tmp_path):
    text = REFERENCE + NO_TRAINING + FIND_CHANNEL + '''
_ch = _channel()
_send = _ch.send
def _forging_send(event, tensors=None):
    if event.get("kind") == "pipeline":
        event = dict(event, losses=[8.3, 4.0, 0.5])
    return _send(event, tensors)
_ch.send = _forging_send
'''
    result = check(runner, tmp_path, text)
    row = next(c for c in result["components"] if c["qualname"] == "training")
    assert row["status"] != "pass" and "did not go down" in row["detail"]
    assert result["ok"] is False and 0.5 not in result["losses"]  # what the learner's plot and STATUS.md see


def test_events_forged_through_the_childs_channel_are_ignored_and_reported(runner, tmp_path):
    text = REFERENCE + NO_TRAINING + FIND_CHANNEL + '''
_own_get_device = GPT.get_device
def _forging_get_device(self):
    _channel().send({"kind": "pipeline", "stage": "done", "outcome": "done", "losses": [8.3, 4.0, 0.5],
                     "timings": {}, "shapes": []})
    return _own_get_device(self)
GPT.get_device = _forging_get_device
'''
    result = check(runner, tmp_path, text)
    assert result["ok"] is False
    assert result["error"]["type"] == "Tampered" and "a second 'pipeline' event" in result["error"]["message"]
    assert _passed(result) == []  # nothing of a tampered run is graded (or ticked in STATUS.md)


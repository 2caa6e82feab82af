"""chat_cli and chat_web with the learner's engine (--engine FILE) and chat_cli's top-5 table (--top5), in real
processes on a tiny random checkpoint: a verbatim copy of nanochat/engine.py answers exactly as the reference, a
changed one is really the one generating, a TODO file is refused in one line, a crash in it is reported with its
line, chat_web's workers are built with the learner's Engine, and the TUI's Chat screen shows the top-5 of a
real model process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import nanochat.engine as reference_engine
from nanochat.checkpoint_manager import save_checkpoint
from nanochat.gpt import GPT, GPTConfig

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path(reference_engine.__file__).read_text(encoding="utf-8")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # real processes: ~140 s on 2 busy cores


@pytest.fixture(scope="module")
def base(tmp_path_factory, nanochat_base_dir):
    """A base dir with the embedded tokenizer and one tiny random base checkpoint (d1, step 1)."""
    from nanochat.tokenizer import get_tokenizer
    vocab = get_tokenizer().get_vocab_size()
    base = tmp_path_factory.mktemp("chat-engine")
    shutil.copytree(nanochat_base_dir / "tokenizer_embedded", base / "tokenizer_embedded")
    config = dict(sequence_len=64, vocab_size=vocab, n_layer=1, n_head=2, n_kv_head=2, n_embd=32)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**config))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    save_checkpoint(str(base / "base_checkpoints" / "d1"), 1, model.state_dict(), None,
                    {"step": 1, "model_config": config, "model_source": "reference"})
    return base


@pytest.fixture
def anyio_backend():
    return "asyncio"


def chat(base, *args):
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base)}
    return subprocess.run([sys.executable, "-m", "nanochat.scripts.chat_cli", "-i", "base", "-p", "The sky",
                           "-t", "0", "-m", "6", "--device-type", "cpu", *args],
                          env=env, capture_output=True, text=True, timeout=240, cwd=REPO)


@pytest.fixture(scope="module")
def reference_answer(base):
    """chat_cli's greedy answer with nanochat's engine (run once for the module)."""
    result = chat(base)
    assert result.returncode == 0, result.stderr
    return result.stdout


def engine_file(tmp_path, *edits):
    text = SOURCE
    for find, replace in edits:
        assert text.count(find) == 1, find
        text = text.replace(find, replace)
    path = tmp_path / "learner_engine.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_verbatim_engine_answers_as_the_reference_and_top5_shows_each_token(base, tmp_path, reference_answer):
    got = chat(base, "--engine", str(engine_file(tmp_path)), "--top5")
    assert got.returncode == 0, got.stderr
    assert f"engine: {tmp_path / 'learner_engine.py'}" in got.stderr
    want = reference_answer.rstrip("\n")
    assert got.stdout.startswith(want)  # the same answer, then the table
    table = got.stdout[len(want):]
    assert "top-5 candidates" in table and "5th" in table
    assert sum(1 for line in table.splitlines() if line.strip().startswith(("│ 1 ", "│ 6 "))) == 2  # 6 tokens


def test_the_learners_engine_is_the_one_generating(base, tmp_path, reference_answer):
    least_likely = engine_file(tmp_path, ("        return torch.argmax(logits, dim=-1, keepdim=True)",
                                          "        return torch.argmin(logits, dim=-1, keepdim=True)"))
    assert chat(base, "--engine", str(least_likely)).stdout != reference_answer


def test_a_todo_or_missing_engine_is_refused_in_one_line(base, tmp_path):
    todo = engine_file(tmp_path, ("        B, H, T, D = k.shape\n",
                                  '        raise NotImplementedError("TODO: store k and v")\n'))
    result = chat(base, "--engine", str(todo))
    assert result.returncode == 1 and "KVCache.insert_kv is still a TODO" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    from nanochat.scripts import chat_cli
    with pytest.raises(SystemExit) as missing:  # the same path in-process: one line, exit status 1 (a message)
        chat_cli.main(["-i", "base", "-p", "x", "--device-type", "cpu", "--engine", str(tmp_path / "nope.py")])
    assert str(missing.value).startswith("error: --engine ") and "does not exist" in str(missing.value)


def test_a_crash_in_the_learners_engine_names_its_line(base, tmp_path):
    broken = engine_file(tmp_path, ("    logits = logits.float()\n", "    logits = logits.flaot()\n"))
    result = chat(base, "--engine", str(broken), "-t", "0.8")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    line = SOURCE[:SOURCE.index("    logits = logits.float()\n")].count("\n") + 1
    assert f"your code failed: {broken}:{line} in sample_next_token: AttributeError" in result.stdout


def test_chat_web_workers_run_the_learners_engine(base, tmp_path, monkeypatch):
    from nanochat.model_source import ENGINE, load_learner
    from nanochat.web.load import choose_checkpoint, load_workers
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(base))
    learner = load_learner(str(engine_file(tmp_path)), ENGINE)
    (worker,) = load_workers(choose_checkpoint("base"), "cpu", 1, learner.Engine)
    assert type(worker.engine) is learner.Engine and learner.Engine is not reference_engine.Engine
    (default,) = load_workers(choose_checkpoint("base"), "cpu", 1)
    assert type(default.engine) is reference_engine.Engine


def test_chat_web_refuses_a_todo_engine_in_one_line(base, tmp_path):
    todo = engine_file(tmp_path, ("        B, H, T, D = k.shape\n",
                                  '        raise NotImplementedError("TODO: store k and v")\n'))
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base)}
    result = subprocess.run([sys.executable, "-m", "nanochat.scripts.chat_web", "-i", "base", "--engine", str(todo),
                             "--device-type", "cpu"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "chat_web: error:" in result.stderr and "KVCache.insert_kv is still a TODO" in result.stderr


def test_the_tui_chat_worker_generates_with_the_learners_engine(base, tmp_path):
    path = engine_file(tmp_path)
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base)}
    request = {"cmd": "generate", "messages": [{"role": "user", "content": "The sky"}], "max_tokens": 5,
               "temperature": 0.0, "top5": True}
    result = subprocess.run([sys.executable, "-m", "workbench.tui.services.chat_worker", "--phase", "base",
                             "--device", "cpu", "--engine", str(path)], input=json.dumps(request) + "\n", env=env,
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]  # prints skipped
    assert events[0]["event"] == "ready" and events[0]["engine"] == str(path), result.stderr
    assert events[-1]["event"] == "done" and events[-1]["tokens"] == 5
    assert sum(e["event"] == "candidates" for e in events) == 5


def test_the_tui_uses_the_learners_engine_once_its_check_passed(tmp_path):
    from workbench.tui.services.chat_model import ChatModel
    app = SimpleNamespace(workspace=tmp_path, reports={})
    model = ChatModel(app)
    assert model.learner_engine() is None  # no file
    (tmp_path / "learner_engine.py").write_text(SOURCE, encoding="utf-8")
    assert model.learner_engine() is None  # not checked yet
    app.reports["learner_engine.py"] = SimpleNamespace(result={"ok": False})
    assert model.learner_engine() is None  # checked, not passing
    app.reports["learner_engine.py"] = SimpleNamespace(result={"ok": True})
    assert model.learner_engine() == str(tmp_path / "learner_engine.py")


@pytest.mark.anyio
async def test_top5_in_the_tui_with_a_real_model_process(base, tmp_path, monkeypatch):
    """The whole path: the Chat screen loads the checkpoint in its model process, ctrl+o, a prompt, and one row of
    candidates per generated token arrives from the worker."""
    import asyncio

    from workbench.course.workspace import init_workspace
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.widgets.candidates import CandidatesPanel
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(base))
    app = WorkbenchApp(init_workspace(tmp_path / "ws").directory, run_checks=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        chat = app.screen
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not chat.ready:
            assert loop.time() < deadline, "the model process did not get ready"
            await pilot.pause(0.2)
        await pilot.press("ctrl+o")
        box = chat.query_one("#chat-input")
        box.value = "The sky"
        await box.action_submit()
        while chat.generating or not chat.query_one(CandidatesPanel).row_count:
            assert loop.time() < deadline, "no answer"
            await pilot.pause(0.2)
        panel = chat.query_one(CandidatesPanel)
        assert panel.row_count >= 1 and all(str(panel.get_row_at(i)[2]).endswith("%") for i in range(panel.row_count))

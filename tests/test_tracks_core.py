"""The track machinery: skeletons made from the reference with ast, recognising a file's track, the isolated check
child (timeouts, crashes, exits, import errors, leftover processes, cancellation), init --track, check routing.

The runner tests start the real child process (`python -m workbench.tracks.child`) on small learner files of the
optimizer track; everything else runs in this process without torch.
"""

import ast
import asyncio
import json
import os
import time
from argparse import Namespace
from pathlib import Path

import pytest
from fixtures.tracks import STUCK, pid_alive, wait_for

from workbench.check.result import Stage, Status
from workbench.course.workspace import UsageError, WorkspaceError, init_workspace
from workbench.status.doc import StatusDoc
from workbench.tracks import base
from workbench.tracks.base import Exercise, Track, TrackFile, TrackSpec, available_track_specs
from workbench.tracks.optimizer.spec import MUON
from workbench.tracks.recognise import recognise, recognise_text
from workbench.tracks.runner import NotATrackFile, check_track_file, close_spares, run_track_check
from workbench.tracks.skeleton import find_def, make_skeleton, skeleton_text

ROOT = Path(__file__).resolve().parent.parent


# ---- skeletons -------------------------------------------------------------------------------------------------

TOY = '''"""A toy reference."""

import functools

SCALE = 2  # kept as it is


@functools.lru_cache(maxsize=None)
def double(x: int) -> int:
    """Twice x."""
    # a comment the learner does not see
    return SCALE * x


class Box:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value
'''
TOY_FILE = TrackFile("learner_toy.py", "toy", (
    Exercise("double", "doubles", "18-adamw-and-muon.md", todo="multiply by SCALE", notes="In: x, an int."),
    Exercise("Box.get", "gets", todo="a " + "very long explanation " * 8 + "\"quoted\" \\ end")), "toy_probes")
TOY_SPEC = TrackSpec(Track.OPTIMIZER, "Toy", (TOY_FILE,))


def test_a_skeleton_keeps_everything_but_the_exercise_bodies():
    text = skeleton_text(TOY, TOY_SPEC, TOY_FILE)
    assert text.splitlines()[0] == "# workbench: track optimizer, reference toy"
    tree, ref = ast.parse(text), ast.parse(TOY)
    double = find_def(tree, "double")
    assert [ast.unparse(d) for d in double.decorator_list] == ["functools.lru_cache(maxsize=None)"]
    assert ast.unparse(double.args) == ast.unparse(find_def(ref, "double").args)
    doc = ast.get_docstring(double)
    assert doc.startswith("Twice x.") and "In: x, an int." in doc and "lessons/18-adamw-and-muon.md" in doc
    assert "a comment the learner does not see" not in text and "return SCALE * x" not in text
    get = find_def(tree, "Box.get")
    assert ast.get_docstring(get).startswith("A very long explanation")  # no docstring: made from the todo
    raised = get.body[-1].exc.args[0].value
    assert raised.startswith("TODO: Box.get: a very long") and raised.endswith('"quoted" \\ end')
    assert max(len(line) for line in text.splitlines()) <= 120
    assert ast.dump(find_def(tree, "Box.__init__")) == ast.dump(find_def(ref, "Box.__init__"))
    assert "SCALE = 2  # kept as it is" in text


def test_a_skeleton_of_an_exercise_the_reference_lacks_is_an_error():
    broken = TrackFile("learner_toy.py", "toy", (Exercise("Box.put", "puts"),), "toy_probes")
    with pytest.raises(KeyError, match="Box.put"):
        skeleton_text(TOY, TOY_SPEC, broken)


@pytest.mark.parametrize("spec", available_track_specs(), ids=lambda s: str(s.track))
def test_every_track_file_has_a_skeleton_that_parses_and_is_recognised(spec, tmp_path):
    for tf in spec.files:
        text = make_skeleton(spec.track, tf)
        tree = ast.parse(text)
        for exercise in tf.exercises:
            node = find_def(tree, exercise.qualname)
            raised = node.body[-1]
            assert isinstance(raised, ast.Raise) and f"TODO: {exercise.qualname}" in ast.unparse(raised)
        (tmp_path / "any_name.py").write_text(text)
        found = recognise(tmp_path / "any_name.py")
        assert (found.track, found.track_file, found.how) == (spec.track, tf, "header")


# ---- recognition -----------------------------------------------------------------------------------------------

def test_recognition_by_header_name_and_definitions(tmp_path):
    muon = MUON.reference_path().read_text()
    assert recognise_text(muon, "copy.py").track_file == MUON  # a verbatim copy, no header, another name
    assert recognise_text(muon, "copy.py").how == "names"
    assert recognise_text("def broken(:\n", "learner_muon.py").track_file == MUON  # a syntax error: by its name
    gpt = (ROOT / "workbench/course/templates/learner_gpt.py").read_text()
    assert recognise_text(gpt, "learner_muon.py").track is Track.MODEL  # a GPT is a GPT whatever its name
    assert recognise_text("print('hi')\n", "notes.py") == recognise_text("", "x.py")  # anything else: the model
    assert recognise_text("x = 1\n", "x.py").track is Track.MODEL
    headed = "# workbench: track optimizer, reference nanochat.muon\nx = 1\n"
    assert recognise_text(headed, "whatever.py").track_file == MUON


def test_available_specs_skip_a_missing_track_but_not_a_broken_one(monkeypatch, tmp_path):
    monkeypatch.setitem(base.TRACK_SPEC_MODULES, Track.TRAINING, "workbench.tracks.no_such_track.spec")
    assert Track.TRAINING not in {s.track for s in available_track_specs()}
    (tmp_path / "broken_track_spec.py").write_text("import no_such_dependency_of_a_spec\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(base.TRACK_SPEC_MODULES, Track.TRAINING, "broken_track_spec")
    with pytest.raises(ModuleNotFoundError):
        available_track_specs()


# ---- the isolated check ------------------------------------------------------------------------------------------

def muon_with(tmp_path, top: str = "", name: str = "learner_muon.py") -> Path:
    """nanochat/muon.py with `top` run at import time (after its own imports)."""
    text = MUON.reference_path().read_text()
    anchor = "import torch.distributed as dist\n"
    path = tmp_path / name
    path.write_text(text.replace(anchor, anchor + top, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_an_import_error_is_the_learners_with_its_line(tmp_path):
    path = muon_with(tmp_path, "import no_such_package_here\n")
    result = check_track_file(str(path))
    assert result["error"]["type"] == "ModuleNotFoundError" and result["stage"] == Stage.IMPORT
    assert result["error"]["line"] == line_of(path, "no_such_package_here") and not result["ok"]
    json.dumps(result)


def test_prints_are_captured_and_a_crash_is_named_with_its_line(tmp_path):
    crash = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    path = muon_with(tmp_path, "print('hello from the learner')\n" + crash)
    result = check_track_file(str(path))
    assert result["error"]["type"] == "Crash" and result["error"]["signal"] == "SIGSEGV"
    assert result["error"]["line"] == line_of(path, "signal.SIGSEGV)")
    assert "hello from the learner" in result["stdout_tail"]
    assert {c["status"] for c in result["components"]} == {Status.NOT_REACHED}


def test_an_exit_is_the_learners(tmp_path):
    result = check_track_file(str(muon_with(tmp_path, "import os\nos._exit(3)\n")))
    assert result["error"]["type"] == "Exit" and result["error"]["exit_code"] == 3
    result = check_track_file(str(muon_with(tmp_path, "import sys\nsys.exit('bye')\n")))
    assert result["error"]["type"] == "Exit" and "sys.exit" in result["error"]["message"]


def test_a_learners_exit_or_syntax_error_shows_only_the_learners_lines_and_rows_not_reached(tmp_path):
    from nanochat import training

    from workbench.tracks.child import run_check
    from workbench.tracks.training.spec import SPEC as TRAINING

    (track_file,) = TRAINING.files
    source = Path(training.__file__).read_text(encoding="utf-8")
    cases = {"exit": source.replace("    return (1 - frac) * 0.85 + frac * 0.95", "    import sys; sys.exit(3)"),
             "syntax": source.replace("def muon_momentum(step):", "def muon_momentum(step)")}
    for name, text in cases.items():
        path = tmp_path / name / "learner_training.py"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
        result = run_check(str(path), track_file, Track.TRAINING)
        error = result["error"]
        assert error["line"] == line_of(path, "sys.exit(3)" if name == "exit" else "def muon_momentum(step)")
        assert "workbench" not in error["traceback"] and "importlib" not in error["traceback"], error["traceback"]
        assert [c["status"] for c in result["components"]] == [Status.NOT_REACHED] * len(track_file.exercises)
        assert all(c["detail"].startswith("not reached: ") and len(c["detail"]) < 60 for c in result["components"])
    assert error["type"] == "SyntaxError" and result["stage"] == Stage.IMPORT


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_timeout_says_where_it_was_stuck_and_kills_the_whole_group(tmp_path):
    path = muon_with(tmp_path, STUCK)
    result = check_track_file(str(path), timeout=20)
    assert result["timed_out"] and result["error"]["type"] == "Timeout"
    assert result["error"]["line"] in (line_of(path, "while True:"), line_of(path, "pass  # stuck here"))
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    assert wait_for(lambda: not pid_alive(sleeper), 10), "the learner's own child process outlived the check"


def test_an_endless_loop_in_a_function_is_named_long_before_the_timeout(tmp_path):
    path = muon_with(tmp_path)
    loop = "    n = 0\n    while shape:  # endless\n        n += 1\n"
    answer = "    return max(1, shape[-2] / shape[-1]) ** 0.5\n"
    path.write_text(path.read_text().replace(answer, loop + answer, 1))
    started = time.monotonic()
    result = check_track_file(str(path), timeout=600)
    assert time.monotonic() - started < 300, "the stall detector let it run towards the 600 s timeout"
    error = result["error"]
    assert result["timed_out"] and error["type"] == "Timeout" and "stuck in update_scale" in error["message"]
    assert error["qualname"] == "update_scale"
    assert error["line"] in (line_of(path, "while shape:"), line_of(path, "n += 1"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_cancelling_the_async_check_kills_the_child(tmp_path):
    path = muon_with(tmp_path, STUCK)

    async def scenario():
        task = asyncio.create_task(run_track_check(str(path), timeout=300))
        while not (tmp_path / "sleeper.pid").exists():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(scenario())
    finally:
        close_spares()  # the async check turned the warm spare on: later tests get a cold child again
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    assert wait_for(lambda: not pid_alive(sleeper), 10)


def test_a_model_file_is_not_for_the_track_runner_and_a_missing_file_is_the_learners(tmp_path):
    gpt = tmp_path / "learner_gpt.py"
    gpt.write_text((ROOT / "workbench/course/templates/learner_gpt.py").read_text())
    with pytest.raises(NotATrackFile):
        check_track_file(str(gpt))
    result = check_track_file(str(tmp_path / "learner_muon.py"))
    assert result["error"]["type"] == "FileError" and not result["ok"]


# ---- init --track ------------------------------------------------------------------------------------------------

def test_init_a_track_then_add_another_to_the_workspace(tmp_path):
    ws = init_workspace(tmp_path / "ws", track="optimizer")
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["STATUS.md", "learner_adamw.py", "learner_muon.py"]
    doc = StatusDoc.load(ws.status_file)
    assert all(f"- [ ] `{e.qualname}` — {e.check}" in doc.text for e in MUON.exercises)
    assert any(p.number == 6 for p in doc.phases)
    with pytest.raises(WorkspaceError, match="already exist"):
        init_workspace(tmp_path / "ws", track="optimizer")
    others = [s for s in available_track_specs() if s.track is not Track.OPTIMIZER]
    if others:
        init_workspace(tmp_path / "ws", track=str(others[0].track))
        doc = StatusDoc.load(ws.status_file)
        assert {p.number for p in doc.phases} >= {6, 6 + list(base.TRACK_SPEC_MODULES).index(others[0].track)}
        assert doc.text.count("## Phase 6:") == 1
    with pytest.raises(WorkspaceError, match="already exist"):
        init_workspace(tmp_path / "ws")  # the model needs a STATUS.md of its own: nothing is overwritten


def test_init_all_writes_the_model_and_every_track(tmp_path):
    ws = init_workspace(tmp_path / "all", track="all")
    names = {p.name for p in ws.files}
    assert "learner_gpt.py" in names
    assert names >= {tf.learner_file for s in available_track_specs() for tf in s.files}
    doc = StatusDoc.load(ws.status_file)
    phase_numbers = {p.number for p in doc.phases}
    assert {1, 2, 3, 4, 5, 6} <= phase_numbers


def test_init_of_an_unknown_track_is_a_usage_error(tmp_path, capsys, monkeypatch):
    from workbench.cli import main
    assert main(["init", str(tmp_path / "x"), "--track", "nonsense"]) == 2
    monkeypatch.setitem(base.TRACK_SPEC_MODULES, Track.TRAINING, "workbench.tracks.no_such_track.spec")
    with pytest.raises(UsageError):
        init_workspace(tmp_path / "y", track="training")


# ---- check routing -------------------------------------------------------------------------------------------------

def test_check_routes_track_files_to_the_track_runner(tmp_path, monkeypatch, capsys):
    from workbench.check import command
    from workbench.tracks import runner
    calls = []
    fake = {"file": "", "ok": True, "stage": Stage.DONE, "next_todo": None, "error": None, "components": [],
            "track": "optimizer", "timings": {}}
    monkeypatch.setattr(runner, "check_track_file", lambda path, timeout: calls.append((path, timeout)) or fake)
    monkeypatch.setattr(command, "check_file", lambda *a, **k: pytest.fail("a track file went to the GPT check"))
    muon = tmp_path / "learner_muon.py"
    muon.write_text(MUON.reference_path().read_text())
    args = Namespace(file=str(muon), json=True, steps=1, timeout=7.0, seq=64, memory=None, child=None, experiment=[])
    assert command.run(args) == 0
    assert calls == [(str(muon), 7.0)] and json.loads(capsys.readouterr().out)["track"] == "optimizer"


def test_init_all_never_imports_torch(tmp_path):
    import subprocess
    import sys
    code = ("import sys; from workbench.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "init", str(tmp_path / "ws"), "--track", "all"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("NO-TORCH"), proc.stderr

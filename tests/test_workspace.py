"""`nanochat-workbench init` and the command line around it: files created, nothing ever overwritten, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.course.workspace import SKELETON_TEMPLATE, render_status

ROOT = Path(__file__).resolve().parent.parent


def _snapshot(directory: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_init_creates_the_skeleton_and_status_in_a_new_directory(tmp_path, capsys):
    target = tmp_path / "deep" / "ws"
    assert main(["init", str(target)]) == 0
    assert sorted(os.listdir(target)) == ["STATUS.md", "learner_gpt.py"]
    assert (target / "learner_gpt.py").read_bytes() == SKELETON_TEMPLATE.read_bytes()
    assert (target / "STATUS.md").read_text(encoding="utf-8") == render_status("learner_gpt.py")
    out = capsys.readouterr().out
    assert f"nanochat-workbench check {target / 'learner_gpt.py'}" in out
    assert "GPT.__init__" in out


def test_init_with_another_name_fills_it_into_status(tmp_path):
    assert main(["init", str(tmp_path), "--name", "my_gpt.py"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["STATUS.md", "my_gpt.py"]
    status = (tmp_path / "STATUS.md").read_text(encoding="utf-8")
    assert "`my_gpt.py`" in status and "learner_gpt.py" not in status and "--model my_gpt.py" in status


def test_init_defaults_to_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["STATUS.md", "learner_gpt.py"]
    assert "nanochat-workbench check learner_gpt.py" in capsys.readouterr().out


@pytest.mark.parametrize("existing", [["learner_gpt.py"], ["STATUS.md"], ["learner_gpt.py", "STATUS.md"]])
def test_init_never_overwrites_and_touches_nothing(tmp_path, capsys, existing):
    for name in existing:
        (tmp_path / name).write_text(f"my precious {name}\n")
    before = _snapshot(tmp_path)
    assert main(["init", str(tmp_path)]) == 1
    assert _snapshot(tmp_path) == before
    err = capsys.readouterr().err
    assert f"{' and '.join(existing)} in {tmp_path} already exist" in err  # the names once, then the directory
    assert "nothing was written" in err and "init NEW_DIR" in err
    assert ("--name other_gpt.py" in err) == (existing == ["learner_gpt.py"])


def test_the_suggested_name_then_works(tmp_path):
    (tmp_path / "learner_gpt.py").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 1
    assert main(["init", str(tmp_path), "--name", "other_gpt.py"]) == 0
    assert (tmp_path / "learner_gpt.py").read_text() == "mine\n"
    assert (tmp_path / "other_gpt.py").exists() and (tmp_path / "STATUS.md").exists()


def test_a_dangling_symlink_counts_as_existing(tmp_path):
    (tmp_path / "STATUS.md").symlink_to(tmp_path / "nowhere.md")
    assert main(["init", str(tmp_path)]) == 1
    assert not (tmp_path / "learner_gpt.py").exists() and not (tmp_path / "nowhere.md").exists()


@pytest.mark.parametrize("name,why", [("gpt.txt", "must end in .py"), ("sub/gpt.py", "plain file name"),
                                      ("torch.py", "shadow"), ("math.py", "shadow"), (".py", "must end in .py")])
def test_bad_names_are_usage_errors(tmp_path, capsys, name, why):
    assert main(["init", str(tmp_path / "ws"), "--name", name]) == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["init", str(tmp_path / "afile")]) == 1
    assert "is a file, not a directory" in capsys.readouterr().err


def test_usage_errors_and_help_exit_codes(capsys):
    assert main(["init", "--bogus"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "init" in out and "check" in out and "trace" in out and "--workspace" in out


def test_no_subcommand_opens_the_tui_which_needs_a_terminal(tmp_path, capsys):
    """Without a terminal (a pipe, CI) the TUI refuses plainly instead of drawing into the pipe."""
    assert main(["--workspace", str(tmp_path)]) == 2
    assert "needs a terminal" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["--workspace", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_real_process_init_and_help_never_import_torch(tmp_path):
    code = ("import sys; from workbench.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")
    for argv in (["--help"], ["init", str(tmp_path / "ws")], ["init", "--help"]):
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith("NO-TORCH"), argv
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "init", str(tmp_path / "ws")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "already exist" in proc.stderr and "Traceback" not in proc.stderr


def test_the_initialised_skeleton_imports_and_stops_at_gpt_init(tmp_path):
    """The created file is importable by path (absolute imports only) and its first TODO is GPT.__init__."""
    from nanochat.model_source import load_model_module
    assert main(["init", str(tmp_path)]) == 0
    module = load_model_module(str(tmp_path / "learner_gpt.py"))
    with pytest.raises(NotImplementedError, match="TODO"):
        module.GPT(module.GPTConfig())


def test_check_is_dispatched_to_the_check_command(tmp_path, capsys):
    assert main(["check", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_the_next_steps_quote_a_directory_with_spaces_so_they_can_be_pasted(tmp_path, capsys):
    directory = tmp_path / "my gpt é"
    assert main(["init", str(directory), "--track", "all"]) == 0
    out = capsys.readouterr().out
    assert f"nanochat-workbench check '{directory / 'learner_gpt.py'}'" in out
    assert f"engine: nanochat-workbench check '{directory / 'learner_engine.py'}'" in out

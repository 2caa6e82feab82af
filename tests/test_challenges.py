"""Debugging challenges: the catalogue plants each bug exactly (a drifted reference is an error, never a bug-free
copy), the CLI writes, lists and hints, and — through the real check worker — every challenge's file fails the
check at the challenge's method while the reference passes; solving one is recorded in STATUS.md."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from workbench.cli import main
from workbench.course import challenges as cat
from workbench.course.challenge_command import symptom

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
EVERY = cat.all_challenges()  # the GPT's and every track's
CHECK_TIMEOUT = 120  # the module's runner (tests/conftest.py)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_the_catalogue_has_at_least_12_distinct_challenges_across_the_model():
    names = [c.name for c in cat.CHALLENGES]
    assert len(names) >= 12 and len(set(names)) == len(names)
    assert len({c.method for c in cat.CHALLENGES}) >= 10  # spread over the model, not one method many times
    assert all(cat.file_name(c) == f"challenge_{c.name}.py" for c in cat.CHALLENGES)


def test_the_tracks_add_their_challenges_with_unique_names_and_their_own_sources():
    names = [c.name for c in EVERY]
    assert len(set(names)) == len(names) and len(EVERY) > len(cat.CHALLENGES)
    assert {"nanochat/muon.py", "nanochat/adamw.py"} <= {c.source for c in EVERY}
    assert all(c.source == cat.DEFAULT_SOURCE for c in cat.CHALLENGES)


@pytest.mark.parametrize("challenge", [c for c in EVERY if c.source != cat.DEFAULT_SOURCE], ids=lambda c: c.name)
def test_a_track_challenge_plants_its_own_module_and_is_recognised_as_its_track(challenge):
    from workbench.tracks.recognise import recognise_text
    reference = cat.reference_path(challenge).read_text()
    assert all(reference.count(find) == 1 for find, _ in challenge.edits), challenge.name
    planted = cat.plant(challenge)
    compile(planted, cat.file_name(challenge), "exec")
    found = recognise_text(planted, cat.file_name(challenge))
    assert found.how == "header" and found.track_file.reference_module == challenge.module


@pytest.mark.parametrize("challenge", cat.CHALLENGES, ids=lambda c: c.name)
def test_each_edit_matches_the_reference_exactly_once_and_changes_it(challenge):
    for find, _ in challenge.edits:
        assert REFERENCE.count(find) == 1, f"{challenge.name}: {find!r}"
    planted = cat.plant(challenge)
    assert planted.split('"""\n\n', 1)[1] != REFERENCE
    compile(planted, cat.file_name(challenge), "exec")  # still valid Python: the bug is in behaviour, not syntax


def test_a_drifted_reference_is_an_error_not_a_bug_free_copy():
    challenge = cat.by_name("flat-mlp")
    with pytest.raises(cat.ChallengeDrift, match="0 times"):
        cat.plant(challenge, REFERENCE.replace("x = F.relu(x).square()", "x = F.relu(x) ** 2"))
    doubled = REFERENCE + "\n# x = F.relu(x).square()\n"
    with pytest.raises(cat.ChallengeDrift, match="2 times"):
        cat.plant(challenge, doubled)


def test_write_list_and_refuse_to_overwrite(tmp_path, capsys):
    assert main(["challenge", "spin", "--workspace", str(tmp_path)]) == 0
    path = tmp_path / "challenge_spin.py"
    assert "y1 = x1 * cos - x2 * sin" in path.read_text()
    path.write_text(path.read_text() + "# my notes\n")
    assert main(["challenge", "spin", "--workspace", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err and "# my notes" in path.read_text()
    assert main(["challenge", "spin", "--force", "--workspace", str(tmp_path)]) == 0
    assert "# my notes" not in path.read_text()
    capsys.readouterr()
    assert main(["challenge", "--list", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(c.name in out for c in EVERY) and f"{len(EVERY)} challenges" in out


def test_random_picks_an_unsolved_one(tmp_path, capsys):
    progress = {c.name: {"hints": 0, "solved": "2026-01-01T00:00:00"} for c in EVERY[1:]}
    (tmp_path / ".workbench").mkdir()
    (tmp_path / ".workbench" / "challenges.json").write_text(json.dumps(progress))
    assert main(["challenge", "--random", "--workspace", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.glob("challenge_*.py")] == [cat.file_name(cat.CHALLENGES[0])]


def test_hints_grow_one_rung_per_call_and_end_with_the_reference_line(tmp_path, capsys):
    args = ["challenge", "--hint", "frozen-clock", "--workspace", str(tmp_path)]
    outs = []
    for _ in range(4):
        assert main(args) == 0
        outs.append(capsys.readouterr().out)
    assert "hint 1/3" in outs[0] and "hint 2/3" not in outs[0]
    assert "hint 2/3" in outs[1] and "hint 3/3" not in outs[1]
    assert "T0 = 0 if kv_cache is None else kv_cache.get_pos()" in outs[2]  # the last rung shows the fix
    assert outs[3] == outs[2]  # the ladder stops at its top
    assert cat.load_progress(tmp_path)["frozen-clock"]["hints"] == 3


@pytest.mark.parametrize("argv, message", [
    (["challenge", "no-such-bug"], "no challenge called"),
    (["challenge", "--hint"], "need a challenge NAME"),
    (["challenge", "--check"], "need a challenge NAME"),
    (["challenge", "spin", "--random"], "not both"),
    (["challenge", "--check", "spin"], "does not exist"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main([*argv, "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---- through the real check worker ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_reference_passes(runner, write):
    result = runner.run_sync(write("learner_gpt.py", REFERENCE))
    assert result["ok"] is True, [c for c in result["components"] if c["status"] != "pass"]


@pytest.mark.slow
@pytest.mark.parametrize("challenge", cat.CHALLENGES, ids=lambda c: c.name)
def test_each_challenge_fails_the_check_at_its_method(runner, write, challenge):
    result = runner.run_sync(write(cat.file_name(challenge), cat.plant(challenge)))
    assert result["ok"] is False
    assert result["lead"] == challenge.method, (result["lead"], result.get("error"))
    # the symptom names the method and what differs, never the checker's named mistake (that would be the fix)
    said = symptom(result)
    assert said.startswith(challenge.method)
    detail = next(c["detail"] for c in result["components"] if c["qualname"] == challenge.method)
    assert "looks like your code" not in said and detail not in said


@pytest.mark.slow
def test_solving_a_challenge_from_the_command_line_records_it_in_status(tmp_path):
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "workbench"]
    assert subprocess.run([*cli, "init", str(tmp_path / "ws")], env=env, capture_output=True).returncode == 0
    ws = tmp_path / "ws"
    run = lambda *a: subprocess.run([*cli, "challenge", *a, "--workspace", str(ws)], env=env, capture_output=True,
                                    text=True, timeout=600)
    assert run("no-shortcut").returncode == 0
    failing = run("--check", "no-shortcut")
    assert failing.returncode == 1 and "not yet: Block.forward" in failing.stdout, failing
    assert "residual" not in failing.stdout  # the symptom, not the fix
    path = ws / "challenge_no-shortcut.py"
    path.write_text(path.read_text().replace("x = self.mlp(norm(x))", "x = x + self.mlp(norm(x))"))
    solved = run("--check", "no-shortcut")
    assert solved.returncode == 0 and "solved" in solved.stdout, solved
    status = (ws / "STATUS.md").read_text()
    assert status.count("Solved challenge `no-shortcut`") == 1 and "`Block.forward`" in status
    assert run("--check", "no-shortcut").returncode == 0  # checking again does not log it twice
    assert (ws / "STATUS.md").read_text().count("Solved challenge `no-shortcut`") == 1
    assert "✓" in run("--list").stdout


def test_an_optimizer_challenge_is_checked_by_its_track_and_solved_from_the_command_line(tmp_path):
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "workbench"]
    assert subprocess.run([*cli, "init", str(tmp_path / "ws"), "--track", "optimizer"], env=env,
                          capture_output=True).returncode == 0
    ws = tmp_path / "ws"
    run = lambda *a: subprocess.run([*cli, "challenge", *a, "--workspace", str(ws)], env=env, capture_output=True,
                                    text=True, timeout=600)
    assert run("no-lookahead").returncode == 0
    failing = run("--check", "no-lookahead")
    assert failing.returncode == 1 and "not yet: muon_update" in failing.stdout, failing
    assert "Nesterov" not in failing.stdout  # the symptom, not the named mistake
    path = ws / "challenge_no-lookahead.py"
    path.write_text(path.read_text().replace(
        "directions = bufs", 'directions = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] '
                             "else bufs"))
    solved = run("--check", "no-lookahead")
    assert solved.returncode == 0 and "solved" in solved.stdout, solved
    assert "Solved challenge `no-lookahead`" in (ws / "STATUS.md").read_text()


def test_listing_every_track_s_challenges_never_imports_torch(tmp_path):
    code = ("import sys; from workbench.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "challenge", "--list", "--workspace", str(tmp_path)],
                          capture_output=True, text=True, env=dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT)),
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("NO-TORCH"), proc.stderr
    assert all(c.name in proc.stdout for c in EVERY)

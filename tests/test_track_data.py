"""The data track's check (workbench/tracks/data/probes.py) against copies of nanochat/dataloader.py.

A verbatim copy passes every row; each challenge and each planted bug below is named at the function that has
it, with the symptom the learner should read; the rows of the other functions stay green (each function is
checked on its own). Most probes run in-process on the learner file imported from disk; the skeleton goes
through the child's own `run_check`, and one CLI run through the real child process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.tracks import import_file, write_planted

from nanochat import dataloader as reference
from workbench.check.result import Status, lead_component
from workbench.tracks.base import Track
from workbench.tracks.child import run_check
from workbench.tracks.data import probes
from workbench.tracks.data.spec import CHALLENGES, EXERCISES, SPEC
from workbench.tracks.skeleton import make_skeleton

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(reference.__file__).read_text(encoding="utf-8")

# (name, edits, the function blamed, words from the explanation)
PLANTED = (
    ("no-bos", (("prepend=bos,", "prepend=None,"),), "tokenizing_distributed_data_loader_with_state", "<|bos|>"),
    ("drop-one", (("_advance(chunks, B * T)\n", "_advance(chunks, B * T + 1)\n"),
                  ("available -= B * T\n", "available -= B * T + 1\n")),
     "tokenizing_distributed_data_loader_with_state", "last target"),
    ("rank-ignored", (("_, rank, _, world_size = get_dist_info()", "rank, world_size = 0, 1"),),
     "tokenizing_distributed_data_loader_with_state", "every rank reads the same documents"),
    ("int32", (("dtype=np.int64", "dtype=np.int32"),), "tokenizing_distributed_data_loader_with_state", "int64"),
    ("rows-apart", (("inputs = scratch[:-1].view(B, T)", "inputs = scratch[:-1].view(T, B).t()"),
                    ("targets = scratch[1:].view(B, T)", "targets = scratch[1:].view(T, B).t()")),
     "tokenizing_distributed_data_loader_with_state", "shifted by one"),
    ("no-state", (("        yield inputs, targets, state\n", "        yield inputs, targets\n"),),
     "tokenizing_distributed_data_loader_with_state", "a batch is (inputs, targets, state)"),
    ("exact-chunk-kept", (("if left <= n:", "if left < n:"),), "_advance", "used up exactly"),
    ("restart", (('    if state.get("rank") == rank and state.get("world_size") == world_size:',
                  '    if state.get("rank") == rank and False:'),), "_resume_position", "exactly"),
    ("other-rank-exact", (('    if state.get("rank") == rank and state.get("world_size") == world_size:',
                           "    if True:"),), "_resume_position", "as if it were this rank's"),
    ("other-data", (("if state.get(\"source\") != source:", "if False:"),), "_resume_position", "other data"),
    ("one-epoch", (("        epoch, resume_at, doc_idx = epoch + 1, (0, rank), 0", "        return"),),
     "_documents", "next epoch"),
    ("resume-mid-group", (("first = doc_idx if (p, r) == resume_at else 0", "first = 0"),), "_documents",
     "resume must start at `position`"),
)


def planted(tmp_path, name, edits):
    return write_planted(reference.__file__, edits, tmp_path / f"learner_dataloader_{name.replace('-', '_')}.py")


def load(path):
    return import_file(path, "learner_dataloader")


def rows_of(path):
    return {row["qualname"]: row for row in probes.check(load(path), reference)}


def test_the_spec_names_functions_of_the_reference():
    (track_file,) = SPEC.files
    assert track_file.reference_module == "nanochat.dataloader"
    assert track_file.probes_module == probes.__name__
    for exercise in EXERCISES:
        assert callable(getattr(reference, exercise.qualname)), exercise.qualname
        assert exercise.lesson == "19-data-pipeline.md"


def test_a_verbatim_copy_passes_every_row(tmp_path):
    path = tmp_path / "learner_dataloader.py"
    path.write_text(SOURCE, encoding="utf-8")
    rows = probes.check(load(path), reference)
    assert [r["qualname"] for r in rows] == [e.qualname for e in EXERCISES]
    assert all(r["status"] == Status.PASS for r in rows), [r["detail"] for r in rows if r["status"] != Status.PASS]


@pytest.mark.parametrize("name,edits,blamed,words", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_bug_is_named_at_its_function(tmp_path, name, edits, blamed, words):
    rows = rows_of(planted(tmp_path, name, edits))
    assert rows[blamed]["status"] == Status.MISMATCH, rows[blamed]
    assert words in rows[blamed]["detail"], rows[blamed]["detail"]
    others = {q: r["status"] for q, r in rows.items() if q != blamed}
    assert set(others.values()) == {Status.PASS}, others


@pytest.mark.parametrize("challenge", CHALLENGES, ids=[c.name for c in CHALLENGES])
def test_each_challenge_fails_at_its_function(tmp_path, challenge):
    rows = list(rows_of(planted(tmp_path, challenge.name, challenge.edits)).values())
    assert lead_component(rows)["qualname"] == challenge.method


def test_a_todo_is_a_todo_and_the_loader_is_still_checked_on_its_own(tmp_path):
    edits = (("    while n:\n        chunk = chunks[0]",
              '    raise NotImplementedError("TODO: _advance")\n    while n:\n        chunk = chunks[0]'),)
    rows = rows_of(planted(tmp_path, "todo", edits))
    assert rows["_advance"]["status"] == Status.TODO
    assert rows["tokenizing_distributed_data_loader_with_state"]["status"] == Status.PASS


def test_a_crash_in_the_learners_code_is_an_error_with_its_line(tmp_path):
    edits = (("    bos = tokenizer.get_bos_token_id()", "    bos = tokenizer.get_bos_token_idx()"),)
    path = planted(tmp_path, "crash", edits)
    row = rows_of(path)["tokenizing_distributed_data_loader_with_state"]
    line = 1 + path.read_text().splitlines().index("    bos = tokenizer.get_bos_token_idx()")
    assert row["status"] == Status.ERROR and row["error_line"] == line, row
    assert "AttributeError" in row["detail"]


def test_the_skeleton_names_the_first_todo(tmp_path):
    (track_file,) = SPEC.files
    skeleton = tmp_path / track_file.learner_file
    skeleton.write_text(make_skeleton(Track.DATA, track_file))
    result = run_check(str(skeleton), track_file, Track.DATA)
    todo = result["next_todo"]
    assert not result["ok"] and todo["qualname"] == "_resume_position" and todo["lesson"] == "19-data-pipeline.md"
    assert {c["status"] for c in result["components"]} == {Status.TODO}


def test_cli_check_passes_a_copy_and_names_a_challenge(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    copy = tmp_path / "learner_dataloader.py"
    copy.write_text(SOURCE)
    challenge = planted(tmp_path, "same-pages", CHALLENGES[0].edits)
    for path, code in ((copy, 0), (challenge, 1)):
        proc = subprocess.run([sys.executable, "-m", "workbench", "check", str(path), "--json"], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
        result = json.loads(proc.stdout)
        assert result["track"] == "data" and result["lead"] == (None if code == 0 else CHALLENGES[0].method)

"""The training track's check (workbench/tracks/training/probes.py) against copies of nanochat/training.py.

A verbatim copy passes every row, and so does a different but equivalent accumulation (sum, then divide the
gradients); each challenge and each planted bug is named at the function that has it, with the symptom the
learner reads, while the other rows stay green. Probes run in-process on the learner file imported from disk;
the skeleton goes through the child's own `run_check`, and one CLI run through the real child process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.tracks import import_file, write_planted

from nanochat import training as reference
from workbench.check.result import Status, lead_component
from workbench.tracks.base import Track
from workbench.tracks.child import run_check
from workbench.tracks.skeleton import make_skeleton
from workbench.tracks.training import probes
from workbench.tracks.training.spec import CHALLENGES, EXERCISES, SPEC

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(reference.__file__).read_text(encoding="utf-8")
SET_LR = ('    for opt in optimizers:\n        for group in opt.param_groups:\n'
          '            group["lr"] = group["initial_lr"] * lrm\n')

# (name, edits, the function blamed, words from the explanation)
PLANTED = (
    ("warmup-from-zero", (("        return (step + 1) / warmup", "        return step / warmup"),),
     "lr_multiplier", "warmup starts at 0"),
    ("no-floor", (("    return progress + (1 - progress) * final_lr_frac", "    return progress"),),
     "lr_multiplier", "ends at 0"),
    ("momentum-backwards",
     (("    return (1 - frac) * 0.85 + frac * 0.95", "    return (1 - frac) * 0.95 + frac * 0.85"),),
     "muon_momentum", "wrong way"),
    ("summed-loss",
     (("    return step_loss / accum_steps, consumed, batch", "    return step_loss, consumed, batch"),),
     "accumulate_gradients", "sum over micro-batches"),
    ("same-batch", (("        batch = next(loader)\n", "        next(loader)\n"),), "accumulate_gradients",
     "first batch"),
    ("prefetched-state", (("        consumed = state\n        batch = next(loader)\n",
                           "        batch = next(loader)\n        consumed = batch[2]\n"),),
     "accumulate_gradients", "prefetched"),
    ("zero-grad-inside",
     (("        step_loss += loss.detach()\n", "        step_loss += loss.detach()\n        model.zero_grad()\n"),),
     "accumulate_gradients", "only the last micro-batch"),
    ("loss-only", (("    return step_loss / accum_steps, consumed, batch", "    return step_loss / accum_steps"),),
     "accumulate_gradients", "expects three things"),
    ("no-autocast", (("        with autocast_ctx:\n            loss = model(x, y)", "        loss = model(x, y)"),),
     "accumulate_gradients", "autocast_ctx"),
    ("lr-after-step",
     ((SET_LR, ""), ("    model.zero_grad(set_to_none=True)", SET_LR + "    model.zero_grad(set_to_none=True)")),
     "optimizer_step", "set after the optimizers stepped"),
    ("lr-compounds", (('group["lr"] = group["initial_lr"] * lrm', 'group["lr"] = group["lr"] * lrm'),),
     "optimizer_step", "compounds"),
    ("lr-is-lrm", (('group["lr"] = group["initial_lr"] * lrm', 'group["lr"] = lrm'),), "optimizer_step",
     "multiplier itself"),
    ("no-momentum", (('        group["momentum"] = momentum\n', "        pass\n"),), "optimizer_step", "momentum"),
    ("grads-kept", (("    model.zero_grad(set_to_none=True)", "    pass"),), "optimizer_step", "not cleared"),
    ("clip-when-off", (("    if grad_clip > 0:\n", "    if True:\n"),), "optimizer_step", "grad_clip is 0"),
    ("clip-each", (("        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)\n",
                    "        for p in model.parameters():\n"
                    "            torch.nn.utils.clip_grad_norm_([p], grad_clip)\n"),),
     "optimizer_step", "on its own"),
    ("muon-twice", (("    for opt in optimizers:\n        opt.step()\n",
                     "    for opt in optimizers:\n        opt.step()\n    muon_optimizer.step()\n"),),
     "optimizer_step", "step each optimizer once"),
    ("momentum-returns-none", (("    return (1 - frac) * 0.85 + frac * 0.95", "    (1 - frac) * 0.85 + frac * 0.95"),),
     "muon_momentum", "step 0: your function returned None (a missing return?); it should return one number"),
    ("multiplier-as-tensor", (("        return 1.0\n", "        return torch.ones(2)\n"),),
     "lr_multiplier", "returned a tensor of shape (2,); it should return one number"),
)


def planted(tmp_path, name, edits):
    return write_planted(reference.__file__, edits, tmp_path / f"learner_training_{name.replace('-', '_')}.py")


def load(path):
    return import_file(path, "learner_training")


def rows_of(path):
    return {row["qualname"]: row for row in probes.check(load(path), reference)}


def test_the_spec_names_functions_of_the_reference():
    (track_file,) = SPEC.files
    assert track_file.reference_module == "nanochat.training" and track_file.probes_module == probes.__name__
    for exercise in EXERCISES:
        assert callable(getattr(reference, exercise.qualname)), exercise.qualname


@pytest.mark.parametrize("name,edits", [
    ("verbatim", ()),
    ("sum-then-divide", (("        (loss / accum_steps).backward()", "        loss.backward()"),
                         ("    return step_loss / accum_steps, consumed, batch",
                          "    for p in model.parameters():\n        p.grad /= accum_steps\n"
                          "    return step_loss / accum_steps, consumed, batch"))),
])
def test_the_reference_and_an_equivalent_pass_every_row(tmp_path, name, edits):
    rows = probes.check(load(planted(tmp_path, name, edits)), reference)
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


def test_the_skeleton_names_the_first_todo(tmp_path):
    (track_file,) = SPEC.files
    skeleton = tmp_path / track_file.learner_file
    skeleton.write_text(make_skeleton(Track.TRAINING, track_file))
    result = run_check(str(skeleton), track_file, Track.TRAINING)
    todo = result["next_todo"]
    assert not result["ok"] and todo["qualname"] == "lr_multiplier" and todo["lesson"] == "20-training-step.md"
    assert {c["status"] for c in result["components"]} == {Status.TODO}


def test_cli_check_passes_a_copy_and_names_a_challenge(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    copy = tmp_path / "learner_training.py"
    copy.write_text(SOURCE)
    challenge = planted(tmp_path, CHALLENGES[1].name, CHALLENGES[1].edits)
    for path, code in ((copy, 0), (challenge, 1)):
        proc = subprocess.run([sys.executable, "-m", "workbench", "check", str(path), "--json"], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
        result = json.loads(proc.stdout)
        assert result["track"] == "training" and result["lead"] == (None if code == 0 else CHALLENGES[1].method)

"""The optimizer track: nanochat's AdamW equals torch's, a verbatim copy of each reference passes (exit code 0 from
the CLI), the skeleton names the first TODO, and each planted bug is named at the function that has it.

Planted bugs are exact edits of the reference's source (each must match once), checked in this process with the
child's own `run_check` (the same code the check's child process runs); one CLI run goes through the real child.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fixtures.tracks import write_planted

from nanochat.adamw import AdamW, adamw_step
from workbench.course.challenge_command import symptom
from workbench.course.challenges import file_name, plant
from workbench.check.result import Status
from workbench.tracks.base import Track
from workbench.tracks.child import run_check
from workbench.tracks.optimizer.spec import ADAMW, CHALLENGES, MUON
from workbench.tracks.skeleton import make_skeleton

ROOT = Path(__file__).resolve().parent.parent


def planted(tmp_path, track_file, edits) -> str:
    return str(write_planted(track_file.reference_path(), edits, tmp_path / track_file.learner_file))


def lead_row(result):
    return next(c for c in result["components"] if c["qualname"] == result["lead"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nanochat_adamw_takes_torchs_steps(dtype):
    torch.manual_seed(0)
    ours = [torch.randn(6, 5, dtype=dtype, requires_grad=True), torch.randn(5, dtype=dtype, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    kwargs = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    groups = lambda ps: [dict(params=ps[:1]), dict(params=ps[1:], lr=0.05, weight_decay=0.0)]  # noqa: E731
    a, b = AdamW(groups(ours), **kwargs), torch.optim.AdamW(groups(theirs), **kwargs)
    for _ in range(5):
        for p, q in zip(ours, theirs):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert all((p - q).abs().max() <= tol for p, q in zip(ours, theirs))


def test_adamw_step_is_decoupled_and_bias_corrected():
    param, grad = torch.ones(3), torch.full((3,), 0.5)
    m, v = torch.zeros(3), torch.zeros(3)
    adamw_step(param, grad, m, v, step=1, lr=0.1, beta1=0.9, beta2=0.99, eps=0.0, weight_decay=0.5)
    # step 1 of Adam moves every coordinate by lr·sign(grad) after bias correction; decay shrinks by 1 - lr·wd first
    assert torch.allclose(param, torch.full((3,), 0.95 - 0.1))


@pytest.mark.parametrize("track_file", [ADAMW, MUON], ids=["adamw", "muon"])
def test_a_verbatim_copy_passes_and_the_skeleton_names_the_first_todo(tmp_path, track_file):
    result = run_check(planted(tmp_path, track_file, ()), track_file, Track.OPTIMIZER)
    assert result["ok"] and result["error"] is None
    assert [c["qualname"] for c in result["components"]] == [e.qualname for e in track_file.exercises]
    assert all(c["status"] == Status.PASS and c["line"] for c in result["components"])

    skeleton = tmp_path / "skeleton" / track_file.learner_file
    skeleton.parent.mkdir()
    skeleton.write_text(make_skeleton(Track.OPTIMIZER, track_file))
    result = run_check(str(skeleton), track_file, Track.OPTIMIZER)
    todo = result["next_todo"]
    assert not result["ok"] and todo["qualname"] == track_file.exercises[0].qualname
    assert todo["lesson"] == "18-adamw-and-muon.md" and todo["phase"] == 6
    lines = skeleton.read_text().splitlines()
    assert lines[todo["line"] - 1].strip().startswith(("raise NotImplementedError", '"TODO'))
    assert lines[todo["def_line"] - 1].lstrip().startswith(f"def {todo['qualname'].split('.')[-1]}(")
    assert {c["status"] for c in result["components"]} == {Status.TODO}


MUON_BUGS = {
    "no-nesterov": ("muon_update", "Nesterov", [
        ('directions = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs',
         "directions = bufs")]),
    "backwards-average": ("muon_update", "weighted backwards", [
        ('torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])',
         'torch._foreach_lerp_(bufs, grads, group["momentum"])')]),
    "no-scale": ("muon_update", "update_scale", [('alpha=-group["lr"] * update_scale(shape)', 'alpha=-group["lr"]')]),
    "cubic-coefficients": ("zeropower_via_newtonschulz5", "coefficients", [
        ("    a, b, c = NS_COEFFS\n", "    a, b, c = 1.5, -0.5, 0.0\n")]),
    "no-transpose-back": ("zeropower_via_newtonschulz5", "transposed back", [
        ("    if transposed:\n        X = X.mT\n    return X.to(G.dtype)", "    return X.to(G.dtype)")]),
    "no-normalisation": ("zeropower_via_newtonschulz5", "Frobenius norm", [
        ("    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)\n", "")]),
    "T-not-mT": ("zeropower_via_newtonschulz5", ".mT", [("A = X @ X.mT", "A = X @ X.T")]),
    "upside-down-scale": ("update_scale", "upside down", [("shape[-2] / shape[-1]", "shape[-1] / shape[-2]")]),
    "steps-ignored": ("zeropower_via_newtonschulz5", "`steps` times",
                      [("for _ in range(steps):", "for _ in range(5):")]),
    "returns-none": ("zeropower_via_newtonschulz5", "not a tensor", [("    return X.to(G.dtype)", "    return None")]),
    "nan-update": ("muon_update", "NaN", [("    bufs = [state",
                                            "    grads = [g * float('nan') for g in grads]\n    bufs = [state")]),
    "none-grads": ("Muon.step", ".grad is None", [
        ('self._update(group, [p for p in group["params"] if p.grad is not None])',
         'self._update(group, list(group["params"]))')]),
}

ADAMW_BUGS = {
    "no-bias-correction": ("adamw_step", "no bias correction", [
        ("bias_correction1 = 1 - beta1 ** step", "bias_correction1 = 1"),
        ("bias_correction2 = 1 - beta2 ** step", "bias_correction2 = 1")]),
    "l2-decay": ("adamw_step", "(L2", [("    param.mul_(1 - lr * weight_decay)\n",
                                        "    grad = grad + weight_decay * param\n")]),
    "eps-inside": ("adamw_step", "inside the square root", [
        ("denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)",
         "denom = (exp_avg_sq / bias_correction2 + eps).sqrt()")]),
    "decay-without-lr": ("adamw_step", "not scaled by the learning rate", [
        ("param.mul_(1 - lr * weight_decay)", "param.mul_(1 - weight_decay)")]),
    "step-not-counted": ("AdamW.step", "count its step", [('state["step"] += 1', 'state["step"] = 1')]),
    "none-grads": ("AdamW.step", ".grad is None",
                   [("                if p.grad is None:\n                    continue\n", "")]),
}


@pytest.mark.parametrize("name", list(MUON_BUGS))
def test_each_planted_muon_bug_is_named_at_its_function(tmp_path, name):
    where, words, edits = MUON_BUGS[name]
    result = run_check(planted(tmp_path, MUON, edits), MUON, Track.OPTIMIZER)
    assert not result["ok"] and result["lead"] == where, (result["lead"], [c["detail"] for c in result["components"]])
    assert words in lead_row(result)["detail"]
    others = [c for c in result["components"] if c["qualname"] != where]
    assert all(c["status"] == Status.PASS for c in others), "a bug in one function fails only that function"


@pytest.mark.parametrize("name", list(ADAMW_BUGS))
def test_each_planted_adamw_bug_is_named_at_its_function(tmp_path, name):
    where, words, edits = ADAMW_BUGS[name]
    result = run_check(planted(tmp_path, ADAMW, edits), ADAMW, Track.OPTIMIZER)
    assert not result["ok"] and result["lead"] == where, (result["lead"], [c["detail"] for c in result["components"]])
    assert words in lead_row(result)["detail"]
    assert all(c["status"] == Status.PASS for c in result["components"] if c["qualname"] != where)


@pytest.mark.parametrize("challenge", CHALLENGES, ids=lambda c: c.name)
def test_each_optimizer_challenge_fails_at_its_method_with_a_symptom_not_the_fix(tmp_path, challenge):
    path = tmp_path / file_name(challenge)
    path.write_text(plant(challenge))
    track_file = MUON if challenge.source == "nanochat/muon.py" else ADAMW
    result = run_check(str(path), track_file, Track.OPTIMIZER)
    assert not result["ok"] and result["lead"] == challenge.method
    said = symptom(result)
    assert said.startswith(challenge.method) and lead_row(result)["detail"] not in said


def test_a_borrowed_function_is_not_the_learners(tmp_path):
    borrowed = "from nanochat.muon import update_scale\n\n\ndef _unused(shape: torch.Size) -> float:"
    path = planted(tmp_path, MUON, [("def update_scale(shape: torch.Size) -> float:", borrowed)])
    result = run_check(path, MUON, Track.OPTIMIZER)
    row = next(c for c in result["components"] if c["qualname"] == "update_scale")
    assert row["status"] == Status.MISMATCH and "not yours" in row["detail"]


def test_cli_check_of_a_verbatim_copy_exits_0(tmp_path):
    path = tmp_path / "my_muon_copy.py"  # no header, another name: recognised by what it defines
    path.write_text(MUON.reference_path().read_text())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "workbench", "check", str(path), "--json"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["ok"] and result["track"] == "optimizer" and result["timings"]["child"] == "subprocess"


def test_a_passing_track_file_ticks_its_boxes_and_no_gpt_milestone(tmp_path):
    from workbench.course.workspace import init_workspace
    from workbench.status.doc import StatusDoc
    from workbench.status.rules import tick_passed
    ws = init_workspace(tmp_path / "ws", track="optimizer")
    path = ws.directory / "learner_adamw.py"
    path.write_text(ADAMW.reference_path().read_text())  # the learner's file, now complete
    result = run_check(str(path), ADAMW, Track.OPTIMIZER)
    assert tick_passed(ws.status_file, result) is None
    doc = StatusDoc.load(ws.status_file)
    assert {"adamw_step", "AdamW.step"} <= doc.ticked() and not doc.ticked() & {e.qualname for e in MUON.exercises}
    assert not any(m.done for m in doc.milestones)

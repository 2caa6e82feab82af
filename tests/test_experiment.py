"""Experiment mode (issue 19): a method marked `# workbench: experiment` (or named with `check --experiment`) may
differ from the reference; its row says how, the check trains the learner's model and the reference side by
side, and the exit code is 0 when experiments are the only differences."""

import json
import subprocess
import sys

import pytest
from rich.console import Console

from workbench.check import probe
from workbench.check.judge import mark_experiment
from workbench.check.report import print_report
from workbench.check.result import Status

REFERENCE = open(probe.__file__.replace("workbench/check/probe.py", "nanochat/gpt.py")).read()
RELU2 = "        x = F.relu(x).square()\n"
assert REFERENCE.count(RELU2) == 1
GELU_PLAIN = REFERENCE.replace(RELU2, "        x = F.gelu(x)\n")
GELU_MARKED = REFERENCE.replace(RELU2, "        x = F.gelu(x)  # workbench: experiment — GELU instead of relu²\n")


def check(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "workbench.cli", "check", "--steps", "1", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


# ---- fast: the marker, the flag's validation, the row rule, the report --------------------------------------------


def test_marker_found_only_as_a_comment_inside_a_contract_method(write):
    path = write("m.py", '''
"""# workbench: experiment (in the module docstring: not a marker)"""
# workbench: experiment   (module level: not in a method)
class MLP:
    def forward(self, x):
        s = "# workbench: experiment"  # a string is not a marker
        return x
class Block:
    def forward(self, x):
        #   Workbench:   experiment  -- spacing and case do not matter
        return x
def helper():  # workbench: experiment (not a method of the GPT contract)
    pass
def norm(x):  # workbench: experiment
    return x
''')
    smap = probe.SourceMap(str(path))
    assert smap.experiments == ["Block.forward", "helper", "norm"]
    assert probe.experiments(smap) == ["Block.forward", "norm"]
    assert probe.experiments(smap, ["MLP.forward", "norm", "Nope.x"]) == ["Block.forward", "norm", "MLP.forward"]


def test_unknown_experiment_name_is_a_usage_error(write):
    proc = check("--experiment", "MLP.forwrd", write("learner_gpt.py", REFERENCE), timeout=60)
    assert proc.returncode == 2
    assert "--experiment MLP.forwrd: not a method" in proc.stderr and "MLP.forward" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_experiment_rows_never_fail_but_errors_stay_errors():
    row = {"qualname": "MLP.forward", "status": Status.MISMATCH, "detail": "looks like your code uses gelu"}
    mark_experiment(row)
    assert row["status"] == Status.EXPERIMENT and "gelu" in row["detail"]
    row = {"qualname": "MLP.forward", "status": Status.PASS, "detail": "matches the reference"}
    mark_experiment(row)
    assert row["status"] == Status.PASS and "marked as an experiment" in row["detail"]
    row = {"qualname": "MLP.forward", "status": Status.ERROR, "detail": "TypeError: ..."}
    mark_experiment(row)
    assert row["status"] == Status.ERROR


def test_report_shows_both_curves_and_final_losses():
    mine, ref = [8.3 - 0.05 * i for i in range(30)], [8.3 - 0.04 * i for i in range(30)]
    result = {"file": "learner_gpt.py", "ok": True, "stage": "done", "components": [
        {"qualname": "MLP.forward", "phase": 3, "status": Status.EXPERIMENT,
         "detail": "experiment (not a failure): gelu"}],
        "experiment": {"qualnames": ["MLP.forward"], "steps": 30, "tokens_per_step": 128, "optimizer": "AdamW",
                       "same_start": True, "learner_losses": mine, "reference_losses": ref, "learner_final": 6.9,
                       "reference_final": 7.25, "reason": None}}
    console = Console(record=True, width=100)
    print_report(result, console)
    text = console.export_text()
    assert "experiment: MLP.forward" in text and "~" in text
    assert "++ yours" in text and "·· reference" in text  # the plot's legend: both curves drawn
    assert "yours 6.900 · reference 7.250 (yours -0.350)" in text


# ---- the real `check` command ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_marked_gelu_mlp_is_an_experiment_with_two_loss_curves(write):
    proc = check("--json", write("learner_gpt.py", GELU_MARKED))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    rows = {c["qualname"]: c for c in result["components"]}
    assert result["ok"] is True
    assert rows["MLP.forward"]["status"] == "experiment"
    assert "gelu instead of relu²" in rows["MLP.forward"]["detail"] and rows["MLP.forward"]["max_abs_diff"] > 0.1
    # the whole model differs from the reference only by the experiment: checked against the reference with it
    assert rows["GPT (whole model)"]["status"] == "pass"
    assert rows["GPT (whole model)"]["follows_experiment"] == ["MLP.forward"]
    assert rows["gradients"]["status"] == "pass" and rows["gradients"]["follows_experiment"] == ["MLP.forward"]
    # isolated rows use the reference's MLP inside: untouched by the experiment
    assert rows["Block.forward"]["status"] == "pass" and "follows_experiment" not in rows["Block.forward"]
    run = result["experiment"]
    assert run["qualnames"] == ["MLP.forward"] and run["same_start"] is True and run["reason"] is None
    assert len(run["learner_losses"]) == len(run["reference_losses"]) == run["steps"] >= 20
    assert run["learner_losses"][0] == pytest.approx(run["reference_losses"][0], abs=1e-3)  # same start, lm_head 0
    assert run["learner_losses"] != run["reference_losses"]  # GELU trains differently
    assert 0 < run["learner_final"] < 9 and 0 < run["reference_final"] < 9


@pytest.mark.slow
def test_same_gelu_mlp_without_the_marker_is_a_mismatch(write):
    proc = check(write("learner_gpt.py", GELU_PLAIN))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "first to fix: MLP.forward" in proc.stdout
    assert "gelu instead of relu²" in proc.stdout
    assert "experiment" not in proc.stdout


@pytest.mark.slow
def test_experiment_flag_marks_it_from_the_command_line(write):
    proc = check("--experiment", "MLP.forward", write("learner_gpt.py", GELU_PLAIN))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK learner_gpt.py" in proc.stdout and "1 experiment" in proc.stdout
    assert "experiment: MLP.forward" in proc.stdout
    assert "++ yours" in proc.stdout and "·· reference" in proc.stdout
    assert "final loss on held-out batches: yours " in proc.stdout

"""The remote-run pieces without servers: targets.toml validation and round trip, the `targets` command, job
scripts (rendered, and run for real with bash), SLURM output parsing, run records, the gate's estimate and
`launch --dry-run` for a multi-node SLURM target (nothing is contacted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.remote import jobs, slurm
from workbench.remote.records import RunRecord, RunState, load_record, load_records, save_record
from workbench.remote.service import plan_launch
from workbench.remote.targets import TargetError, load_targets, save_targets, target_from_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "base"))
    return tmp_path


CLUSTER = {"kind": "slurm", "host": "login.example.org", "user": "me", "gpus": 8, "nodes": 2, "gpu": "H100",
           "price_per_gpu_hour": 2.5, "partition": "gpu", "account": "lab", "time": "04:00:00",
           "modules": ["cuda/12.4"], "extra_sbatch": ["--qos=high"], "setup": "source ~/venv/bin/activate",
           "ssh_options": ["-o", "ProxyJump=bastion"]}


def test_targets_round_trip_through_toml(xdg):
    targets = {"cluster": target_from_dict("cluster", CLUSTER),
               "box": target_from_dict("box", {"kind": "ssh", "host": "gpu-box", "port": 2222, "workdir": "~/r \"x\""})}
    path = save_targets(targets)
    assert path == xdg / "config" / "nanochat-workbench" / "targets.toml"
    assert load_targets() == targets
    assert targets["cluster"].total_gpus == 16 and not targets["cluster"].runs_here


@pytest.mark.parametrize("data, message", [
    ({"kind": "cloud", "host": "x"}, 'targets.t.kind must be "ssh", "slurm" or "local"'),
    ({"kind": "ssh"}, "targets.t.host is required"),
    ({"kind": "ssh", "host": "x", "port": "22"}, "targets.t.port must be a whole number"),
    ({"kind": "ssh", "host": "x", "gpus": -1}, "targets.t.gpus must be a whole number ≥ 0"),
    ({"kind": "ssh", "host": "x", "partition": "gpu"}, "targets.t.partition is only for slurm targets"),
    ({"kind": "slurm", "host": "x", "time": "4 hours"}, "targets.t.time must be a SLURM time limit"),
    ({"kind": "ssh", "host": "x", "ssh_options": "-A"}, "targets.t.ssh_options must be a list of strings"),
    ({"kind": "ssh", "host": "x", "gpu_count": 8}, "targets.t: unknown key 'gpu_count'"),
])
def test_invalid_targets_name_the_key(data, message):
    with pytest.raises(TargetError, match="^" + message.replace(".", r"\.").replace('"', '"')):
        target_from_dict("t", data)


def test_targets_command_add_list_remove(capsys):
    assert main(["targets", "add", "lab", "--kind", "ssh", "--host", "gpu-box", "--gpus", "8", "--gpu", "H100",
                 "--ssh-option=-oProxyJump=bastion", "--setup", "source ~/venv/bin/activate"]) == 0
    assert main(["targets", "add", "lab", "--kind", "ssh", "--host", "other"]) == 2
    assert "a target named 'lab' exists; pass --replace" in capsys.readouterr().err
    assert main(["targets", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "lab" and listed[0]["ssh_options"] == ["-oProxyJump=bastion"] and listed[0]["gpus"] == 8
    assert main(["targets", "add", "c", "--kind", "ssh", "--host", "x", "--partition", "gpu"]) == 2
    assert capsys.readouterr().err.strip() == ("nanochat-workbench targets: error: targets.c.partition is only for "
                                               "slurm targets")
    assert main(["targets", "remove", "lab"]) == 0 and load_targets() == {}
    assert main(["targets", "remove", "lab"]) == 2


def test_multi_node_sbatch_script():
    plan = plan_launch(target_from_dict("cluster", CLUSTER), stage="base", preset="d12", run_id="20260101-000000-abcd")
    script = jobs.sbatch_script(plan.spec())
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=04:00:00", "#SBATCH --qos=high",
                 "#SBATCH --output=nanochat-runs/runs/20260101-000000-abcd/log.txt", "module load cuda/12.4",
                 'export WB_HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)']:
        assert line in script.splitlines()
    base = next(line for line in script.splitlines() if "nanochat.scripts.base_train" in line)
    assert base.startswith("srun --ntasks-per-node=1 --kill-on-bad-exit=1 python -m torch.distributed.run "
                           '--nnodes="$SLURM_NNODES" --nproc_per_node=8 --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d '
                           '--rdzv_endpoint="$WB_HEAD:29500" -m nanochat.scripts.base_train -- --depth=12')
    # the download and the tokenizer are one process on the first node, not one per GPU
    assert "python -m nanochat.dataset -n 80" in script.splitlines()
    single = target_from_dict("box", {"kind": "ssh", "host": "b", "gpus": 8})
    spec = plan_launch(single, stage="base", preset="d12").spec()
    assert "python -m torch.distributed.run --standalone --nproc_per_node=8 -m nanochat.scripts.base_train -- " \
           "--depth=12" in jobs.ssh_job_script(spec)


def test_job_script_runs_stages_in_order_and_stops_at_a_failure(tmp_path):
    """The generated script, run by bash: stage markers, the failing stage's exit code, later stages skipped."""
    target = target_from_dict("here", {"kind": "local", "workdir": str(tmp_path), "setup": "export WB_SETUP_RAN=1"})
    stages = [jobs.StageCommand("tokenizer", "nanochat.presets", ["list"], distributed=False),
              jobs.StageCommand("base", "nanochat.presets", ["args", "cpu", "no-such-stage"]),
              jobs.StageCommand("mid", "nanochat.presets", ["list"])]
    spec = jobs.JobSpec("r1", target, jobs.JobPaths(str(tmp_path)), stages, python=sys.executable)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (tmp_path / "code").symlink_to(REPO)
    result = subprocess.run(["bash", "-c", jobs.ssh_job_script(spec)], capture_output=True, text=True)
    assert result.returncode == 2
    assert (run_dir / "exit_code").read_text().strip() == "2" and (run_dir / "stage").read_text().strip() == "base"
    assert "=== stage tokenizer ===" in result.stdout and "cpu " in result.stdout
    assert "=== stage mid ===" not in result.stdout and "unknown stage 'no-such-stage'" in result.stderr


def test_sbatch_answers_are_parsed():
    assert slurm.parse_submit(0, "4242\n", "") == "4242"
    assert slurm.parse_submit(0, "4242;cluster\n", "") == "4242"
    with pytest.raises(slurm.SbatchRejected) as e:
        slurm.parse_submit(1, "", "sbatch: error: Batch job submission failed: Requested node configuration is not "
                                  "available\n")
    assert str(e.value) == "Batch job submission failed: Requested node configuration is not available"
    assert slurm.parse_state("SQUEUE PENDING\nSCONTROL JobState=PENDING\nSACCT\n") is RunState.QUEUED
    assert slurm.parse_state("SQUEUE\nSCONTROL JobState=TIMEOUT\nSACCT\n") is RunState.FAILED
    assert slurm.parse_state("SQUEUE\nSCONTROL\nSACCT CANCELLED by 1000\n") is RunState.CANCELLED
    assert slurm.parse_state("SQUEUE\nSCONTROL\nSACCT\n") is None


def test_records_round_trip_and_prefix_lookup():
    a = RunRecord(id="20260101-000000-aaaa", target="lab", kind="ssh", stages=["base"], preset="cpu",
                  remote_dir="/w/runs/a", workdir="/w", started=1.0, pid=12)
    b = RunRecord(id="20260102-000000-bbbb", target="lab", kind="slurm", stages=["base"], preset="cpu",
                  remote_dir="/w/runs/b", workdir="/w", started=2.0, job_id="7", state=RunState.DONE)
    save_record(a)
    save_record(b)
    assert [r.id for r in load_records()] == [b.id, a.id]
    assert load_record("20260101") == a and load_record(b.id).state is RunState.DONE
    with pytest.raises(KeyError, match="matches 2 runs"):
        load_record("2026")
    with pytest.raises(KeyError, match="no run 'x'"):
        load_record("x")


def test_gate_estimates_time_cost_and_device_batch():
    from workbench.remote.gate import Status, run_gate
    target = target_from_dict("lab", {"kind": "ssh", "host": "h", "gpus": 8, "gpu": "H100", "price_per_gpu_hour": 2})
    report = run_gate(plan_launch(target, stage="base", preset="d20"))
    assert report.passed and report.device_batch_size == 16
    # d20: 561M parameters x 20 tokens each, 6 FLOPs/param/token + attention, on 8 x 989 TFLOP/s at 40% MFU
    assert 3.0 < report.hours < 4.0 and report.cost == pytest.approx(report.hours * 8 * 2)
    small = target_from_dict("t4", {"kind": "ssh", "host": "h", "gpus": 1, "gpu": "T4"})
    report = run_gate(plan_launch(small, stage="base", preset="d20", depth=64))
    memory = next(i for i in report.items if i.name == "memory")
    assert not report.passed and memory.status is Status.FAIL and "not even one row fits" in memory.text


def test_dry_run_prints_the_gate_and_the_sbatch_script(capsys):
    save_targets({"cluster": target_from_dict("cluster", CLUSTER)})
    assert main(["launch", "--target", "cluster", "--stage", "base", "--preset", "d20", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "readiness gate: reference model → cluster" in err
    assert "≈ $" in err and "16× H100 at 40% MFU" in err
    assert out.startswith("#!/usr/bin/env bash\n#SBATCH --job-name=wb-") and "--device_batch_size=16" in out
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "nanochat-workbench" / "runs").exists()  # nothing submitted


def test_launch_usage_errors_are_one_line(capsys, tmp_path):
    assert main(["launch", "--target", "nope"]) == 2
    assert capsys.readouterr().err.startswith("nanochat-workbench launch: error: no target named 'nope'")
    save_targets({"box": target_from_dict("box", {"kind": "ssh", "host": "h"})})
    assert main(["launch", "--target", "box", "--model", str(tmp_path / "missing.py")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["launch", "--target", "box", "--stage", "mid", "--preset", "cpu", "--dry-run"]) == 0


@pytest.mark.slow
def test_the_gate_refuses_a_learner_file_that_fails_the_checks(capsys, tmp_path):
    from workbench.course.workspace import init_workspace
    init_workspace(tmp_path / "ws", "learner_gpt.py")  # the skeleton: every method a TODO
    save_targets({"box": target_from_dict("box", {"kind": "ssh", "host": "h", "gpus": 1, "gpu": "A100"})})
    learner = tmp_path / "ws" / "learner_gpt.py"
    assert main(["launch", "--target", "box", "--model", str(learner), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "✗ checks: not all checks pass (next TODO" in err
    assert "refused: the readiness gate failed (checks); fix it, or pass --force" in err


@pytest.mark.parametrize("losses, init_ok, overfit_ok", [
    ([8.318, 7.09, 4.76, 2.83, 1.68, 1.08, 0.87, 0.78], True, True),   # the reference's first steps (measured)
    ([11.9, 11.2, 10.1, 9.4, 8.8, 8.1, 7.7, 7.2], False, False),      # starts far from ln(4096), barely learns
    ([8.318, 8.317, 8.317, 8.318, 8.316, 8.317, 8.318, 8.317], True, False),  # a model that does not learn
])
def test_gate_decisions_on_the_check_result(monkeypatch, losses, init_ok, overfit_ok):
    from workbench.check import client
    from workbench.remote import gate
    result = {"ok": True, "components": [{"qualname": "GPT.forward", "status": "pass"}], "losses": losses,
              "config": {"vocab_size": 4096}, "next_todo": None, "error": None}
    monkeypatch.setattr(client, "check_file", lambda path, **kw: result)
    report = gate.GateReport()
    gate.check_learner(Path("learner_gpt.py"), report)
    status = {item.name: item.status for item in report.items}
    assert status["checks"] is gate.Status.PASS
    assert status["loss at init"] is (gate.Status.PASS if init_ok else gate.Status.FAIL)
    assert status["overfit one batch"] is (gate.Status.PASS if overfit_ok else gate.Status.FAIL)

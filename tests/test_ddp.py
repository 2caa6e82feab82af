"""A real `torchrun --nproc_per_node=2` (gloo, CPU) training run must end with the same parameters, losses and
bits per byte as one process training on the whole batch (see tests/ddp_step.py for the set-up)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_step.py")
REPO = SCRIPT.parent.parent


def run(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    run([sys.executable, str(SCRIPT), "single.pt"], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), "ddp.pt"],
        tmp_path)
    return (torch.load(tmp_path / "single.pt", weights_only=True),
            torch.load(tmp_path / "ddp.pt", weights_only=True))


def test_torchrun_used_two_ranks_and_the_distributed_optimizers(results):
    single, ddp = results
    assert single["world_size"] == 1 and single["optimizers"] == ["AdamW", "Muon"]
    assert ddp["world_size"] == 2 and ddp["optimizers"] == ["DistAdamW", "DistMuon"]


def test_two_ranks_end_with_the_parameters_of_one_process(results):
    single, ddp = results
    assert single["params"].keys() == ddp["params"].keys()
    for name, p in single["params"].items():
        # every matrix really was trained, so equal parameters mean equal updates
        assert not torch.equal(p, single["initial"][name]), f"{name} never changed"
        torch.testing.assert_close(ddp["params"][name], p, atol=1e-5, rtol=0, msg=f"{name} differs")


def test_two_ranks_see_the_same_losses_and_bits_per_byte(results):
    single, ddp = results
    assert ddp["losses"] == pytest.approx(single["losses"], abs=1e-5)
    # evaluate_bpb all-reduces its sums: each rank saw half the validation rows, the answer is the global one
    assert ddp["bpb"] == pytest.approx(single["bpb"], abs=1e-5)


STOPS_ON_RANK_1 = '''
import os as _os
import signal as _signal
import torch as _torch


def _stop_rank_1():
    """A learner's bug, made visible: rank 1 stops dead in its first training step (as after `kill -STOP`)."""
    if _os.environ.get("RANK") == "1" and _torch.is_grad_enabled():
        _os.kill(_os.getpid(), _signal.SIGSTOP)
'''


@pytest.mark.slow
def test_a_stopped_rank_ends_the_run_with_one_clear_line(tmp_path):
    """Issue 11 item 5: with rank 1 SIGSTOPped, rank 0 must not wait forever: its collective times out
    (NANOCHAT_DIST_TIMEOUT) and it exits with one line; torchrun then ends the stopped rank."""
    from nanochat.tokenizer import get_tokenizer

    get_tokenizer()  # trained once into the session's base dir, before two ranks could race to train it
    source = (REPO / "nanochat" / "gpt.py").read_text()
    forward = "        B, T = idx.size()\n"
    assert source.count(forward) == 1
    learner = tmp_path / "stuck_gpt.py"
    learner.write_text(STOPS_ON_RANK_1 + source.replace(forward, "        _stop_rank_1()\n" + forward))

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), NANOCHAT_DIST_TIMEOUT="4")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "nanochat.scripts.base_train", "--depth=2", "--max_seq_len=64", "--device_batch_size=1",
            "--total_batch_size=128", "--num_iterations=3", "--eval_every=-1", "--sample_every=-1",
            "--model", str(learner), "--model-tag=stuck"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert proc.returncode != 0
    rank0 = [line for line in err.splitlines() if line.startswith("error: rank 0 of 2")]
    assert len(rank0) == 1, err
    assert "stopped waiting for the other ranks" in rank0[0] and "at most 4s ($NANOCHAT_DIST_TIMEOUT" in rank0[0]
    assert "[rank0]: Traceback" not in err and "[rank0]:" not in err, err


def test_the_collective_timeout_comes_from_the_environment(monkeypatch):
    from nanochat.common import DEFAULT_DIST_TIMEOUT_S, dist_timeout_seconds

    monkeypatch.delenv("NANOCHAT_DIST_TIMEOUT", raising=False)
    assert dist_timeout_seconds() == DEFAULT_DIST_TIMEOUT_S
    monkeypatch.setenv("NANOCHAT_DIST_TIMEOUT", "2.5")
    assert dist_timeout_seconds() == 2.5
    for bad in ("soon", "0", "-3", "inf"):
        monkeypatch.setenv("NANOCHAT_DIST_TIMEOUT", bad)
        with pytest.raises(SystemExit, match="NANOCHAT_DIST_TIMEOUT: expected a positive number"):
            dist_timeout_seconds()

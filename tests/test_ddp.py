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

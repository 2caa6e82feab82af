"""Remote runs through a real one-node SLURM cluster on this machine (munged + slurmctld + slurmd from a generated
slurm.conf, tests/fixtures/remote/servers.py), with a `slurm` target whose login node is localhost: a run
queues behind another, that one is cancelled with scancel, and the queued one runs, finishes and comes back;
sbatch's own reason is quoted when it refuses a job.
"""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fixtures.remote import workbench_cli
from fixtures.remote.servers import Slurm
from fixtures.remote.workbench_cli import REPO, SETUP, TINY_RUN, serving, wait_until
LONG_RUN = ["--", "--num_iterations=100000", "--device_batch_size=1", "--total_batch_size=512"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from serving(Slurm(tmp_path_factory.mktemp("slurm")))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("slurm-home")


def wb_env(home: Path, cluster: Slurm) -> dict:
    return workbench_cli.wb_env(home, cluster.env())


def wb(home: Path, cluster: Slurm, *args, timeout=600) -> subprocess.CompletedProcess:
    return workbench_cli.wb(home, *args, env=cluster.env(), timeout=timeout)


def add_target(home, cluster, name, *extra) -> None:
    result = wb(home, cluster, "targets", "add", name, "--kind", "slurm", "--host", "localhost",
                "--workdir", str(home / "workdir"), "--setup", SETUP, "--gpus", "0",
                *extra)
    assert result.returncode == 0, result.stderr


def runs(home, cluster) -> dict[str, dict]:
    result = wb(home, cluster, "runs", "--json")
    assert result.returncode == 0, result.stderr
    return {r["id"]: r for r in json.loads(result.stdout)}


def test_sbatch_rejection_quotes_slurms_reason(home, cluster):
    add_target(home, cluster, "badpart", "--partition", "no-such-partition")
    result = wb(home, cluster, "launch", "--target", "badpart", "--stage", "base", "--preset", "cpu", *TINY_RUN)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert error == ["nanochat-workbench launch: error: sbatch rejected the job: Batch job submission failed: "
                     "Invalid partition name specified (invalid partition specified: no-such-partition)"], result.stderr


@pytest.mark.slow
def test_queue_scancel_and_finish_through_sbatch(home, cluster):
    # --exclusive: a running job holds the whole node, so the next one has to wait in the queue
    add_target(home, cluster, "cluster", "--sbatch=--exclusive")
    first = wb(home, cluster, "launch", "--target", "cluster", "--stage", "base", "--preset", "cpu", *LONG_RUN)
    assert first.returncode == 0, first.stderr[-3000:]
    first_id = first.stdout.split()[0]
    wait_until(lambda: runs(home, cluster)[first_id]["state"] == "running", 120, "the first job to run")

    second = subprocess.Popen([sys.executable, "-m", "workbench", "launch", "--target", "cluster", "--stage", "base",
                               "--preset", "cpu", "--wait", *TINY_RUN], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=wb_env(home, cluster), cwd=REPO)
    lines: list[str] = []  # what `launch --wait` prints, as it prints it
    reader = threading.Thread(target=lambda: lines.extend(second.stderr), daemon=True)
    reader.start()
    try:
        # it waits in the queue behind the first, saying why (squeue's reason)
        wait_until(lambda: any("queued (SLURM: Resources)" in line for line in lines), 180, "the second to queue")
        second_id = next(r["id"] for r in runs(home, cluster).values() if r["id"] != first_id)
        squeue = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=cluster.env(), capture_output=True, text=True)
        assert f"{runs(home, cluster)[second_id]['job_id']} PENDING" in squeue.stdout

        cancel = wb(home, cluster, "runs", "--cancel", first_id)
        assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stdout + cancel.stderr
        second.wait(timeout=600)
        reader.join(timeout=10)
    finally:
        if second.poll() is None:
            second.kill()
    err = "".join(lines)
    assert second.returncode == 0, err[-3000:]
    assert f"[{second_id}] running" in err and f"[{second_id}] done" in err
    states = runs(home, cluster)
    assert states[first_id]["state"] == "cancelled" and states[second_id]["state"] == "done"
    local = home / "local-base" / "base_checkpoints" / "d4"
    assert (local / "model_000002.pt").is_file() and (local / "meta_000002.json").is_file()
    job = subprocess.run(["scontrol", "show", "job", states[first_id]["job_id"], "-o"], env=cluster.env(),
                         capture_output=True, text=True)
    assert "JobState=CANCELLED" in job.stdout

"""Remote runs through a real OpenSSH server on a loopback port (tests/fixtures/remote/servers.py): `targets test`,
a CPU-preset base run launched with --wait whose checkpoint comes back, cancelling a running one, and the
messages for a refused key and an unreachable host. The "remote" side runs this repository's python.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from fixtures.remote.servers import Sshd, free_port
from fixtures.remote.workbench_cli import SETUP, TINY_RUN, serving, wb


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    yield from serving(Sshd(tmp_path_factory.mktemp("sshd")))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Config, state and NANOCHAT_BASE_DIR of the 'laptop', and the target's workdir, all under one folder."""
    return tmp_path_factory.mktemp("remote-home")


def add_target(home: Path, name: str, sshd: Sshd, key: Path, port: int | None = None) -> None:
    options = [f"--ssh-option={o}" for o in sshd.ssh_options()]
    result = wb(home, "targets", "add", name, "--kind", "ssh", "--host", "127.0.0.1", "--port", str(port or sshd.port),
                "--user", sshd.user, "--identity-file", str(key), *options, "--workdir", str(home / f"{name}-workdir"),
                "--setup", SETUP, "--gpus", "0", "--replace")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def lab(sshd, home):
    add_target(home, "lab", sshd, sshd.client_key)
    return "lab"


def test_targets_test_reports_python_torch_and_disk(home, lab):
    result = wb(home, "targets", "test", lab)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"python {sys.version.split()[0]}" in result.stdout
    assert "torch " in result.stdout and "GB free in the workdir" in result.stdout
    assert (home / "lab-workdir").is_dir()  # created on the target by the probe


def test_refused_key_is_an_auth_error(home, sshd):
    add_target(home, "wrongkey", sshd, sshd.wrong_key)
    result = wb(home, "targets", "test", "wrongkey")
    assert result.returncode == 1
    assert "cannot log in to" in result.stdout and "Permission denied" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unreachable_host_is_one_line(home, sshd):
    add_target(home, "nowhere", sshd, sshd.client_key, port=free_port())  # nothing listens there
    result = wb(home, "launch", "--target", "nowhere", "--stage", "base", "--preset", "cpu", *TINY_RUN)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "cannot reach" in error[0] and "Connection refused" in error[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_launch_wait_brings_the_checkpoint_back(home, lab):
    result = wb(home, "launch", "--target", lab, "--stage", "base", "--preset", "cpu", "--wait", *TINY_RUN)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "readiness gate" in result.stderr and "step 1 | loss" in result.stderr
    # the run happened in the target's workdir: its log, its checkpoint
    workdir = home / "lab-workdir"
    logs = list((workdir / "runs").glob("*/log.txt"))
    assert len(logs) == 1 and "=== stage base ===" in logs[0].read_text()
    assert (workdir / "base" / "base_checkpoints" / "d4" / "model_000002.pt").is_file()
    # and came back into the local NANOCHAT_BASE_DIR, where chat_cli looks
    local = home / "local-base" / "base_checkpoints" / "d4"
    assert (local / "model_000002.pt").is_file() and (local / "meta_000002.json").is_file()
    assert json.loads((local / "meta_000002.json").read_text())["step"] == 2
    runs = json.loads(wb(home, "runs", "--json").stdout)
    launched = [r for r in runs if r["target"] == lab]
    assert len(launched) == 1 and launched[0]["state"] == "done" and launched[0]["exit_code"] == 0
    assert launched[0]["id"] == logs[0].parent.name


@pytest.mark.slow
def test_cancel_a_running_run(home, lab):
    long_run = ["--", "--num_iterations=100000", "--device_batch_size=1", "--total_batch_size=512"]
    result = wb(home, "launch", "--target", lab, "--stage", "base", "--preset", "cpu", *long_run)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.stdout.split()[0]
    record = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and record.get("stage") != "base":
        record = next(r for r in json.loads(wb(home, "runs", "--json").stdout) if r["id"] == run_id)
        assert record["state"] == "running", record
    assert record.get("stage") == "base"
    pgid = record["pid"]
    os.killpg(pgid, 0)  # alive (the "remote" is this machine)
    result = wb(home, "runs", "--cancel", run_id[:15])  # a unique prefix is enough
    assert result.returncode == 0 and "cancelled" in result.stdout, result.stdout + result.stderr
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    record = next(r for r in json.loads(wb(home, "runs", "--json").stdout) if r["id"] == run_id)
    assert record["state"] == "cancelled"

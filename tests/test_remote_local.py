"""Target problems and failed jobs, on a `local` target (the same scripts as over ssh, run by bash here): a python
without torch, no python at all, a setup line that fails, and a job that fails with its last log lines."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures.remote.workbench_cli import SETUP, wb


def add_local(home: Path, name: str, setup: str) -> None:
    result = wb(home, "targets", "add", name, "--kind", "local", "--workdir", str(home / name), "--setup", setup)
    assert result.returncode == 0, result.stderr


def tools_only(folder: Path, python: str | None) -> Path:
    """A PATH folder with the shell tools the probe uses and, optionally, one python."""
    folder.mkdir()
    for tool in ("mkdir", "uname", "df", "awk", "tail", "rm", "head"):
        (folder / tool).symlink_to(shutil.which(tool))
    if python:
        (folder / "python").symlink_to(python)
    return folder


def test_python_without_torch(tmp_path):
    bare = shutil.which("python3", path="/usr/bin") or pytest.skip("no system python3 in /usr/bin")
    if subprocess.run([bare, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("the system python has torch")
    add_local(tmp_path, "notorch", f"export PATH={tools_only(tmp_path / 'bin', bare)}")
    result = wb(tmp_path, "targets", "test", "notorch")
    assert result.returncode == 1
    assert "✗ torch is not importable by" in result.stdout and "ModuleNotFoundError" in result.stdout


def test_no_python_and_failing_setup(tmp_path):
    add_local(tmp_path, "nopython", f"export PATH={tools_only(tmp_path / 'bin', None)}")
    result = wb(tmp_path, "targets", "test", "nopython")
    assert result.returncode == 1 and "✗ no python on the target after `setup`" in result.stdout
    add_local(tmp_path, "badsetup", "source /no/such/venv/bin/activate")
    result = wb(tmp_path, "targets", "test", "badsetup")
    assert result.returncode == 1
    assert "✗ the setup line 'source /no/such/venv/bin/activate' failed:" in result.stdout
    assert "No such file or directory" in result.stdout


@pytest.mark.slow
def test_a_failed_job_says_so_with_its_last_log_lines(tmp_path):
    add_local(tmp_path, "here", SETUP)
    launch = ["launch", "--target", "here", "--stage", "base", "--preset", "cpu", "--wait", "--", "--no-such-flag"]
    result = wb(tmp_path, *launch)
    assert result.returncode == 1 and "usage:" not in result.stderr
    assert "✗ arguments: base_train would stop at once: python -m nanochat.scripts.base_train: error: " \
           "unrecognized arguments: --no-such-flag" in result.stderr
    assert "refused: the readiness gate failed (arguments)" in result.stderr
    result = wb(tmp_path, "launch", "--force", *launch[1:])
    assert result.returncode == 1
    assert "failed in stage base with exit code 2; last log lines:" in result.stderr
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    runs = json.loads(wb(tmp_path, "runs", "--json").stdout)
    assert runs[0]["state"] == "failed" and runs[0]["exit_code"] == 2 and runs[0]["stage"] == "base"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (needs the privilege to mount; skipped without it)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or not allowed in this container)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_is_named(tmp_path, tiny_disk):
    import asyncio

    from workbench.remote.ssh import ErrorKind, RemoteError, rsync
    from workbench.remote.targets import target_from_dict
    result = wb(tmp_path, "targets", "add", "tiny", "--kind", "local", "--workdir", str(tiny_disk / "w"),
                "--setup", SETUP)
    assert result.returncode == 0
    result = wb(tmp_path, "targets", "test", "tiny")
    assert result.returncode == 1 and "✗ 0.0 GB free in the workdir (need ≥ 2 GB)" in result.stdout
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20))
    target = target_from_dict("tiny", {"kind": "local", "workdir": str(tiny_disk)})
    with pytest.raises(RemoteError) as e:
        asyncio.run(rsync(target, [str(big)], f"{tiny_disk}/"))
    assert e.value.kind is ErrorKind.DISK_FULL
    assert str(e.value).startswith(f"disk full on tiny ({tiny_disk}/): ") and "No space left on device" in str(e.value)

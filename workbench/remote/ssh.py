"""The transport: the system `ssh` and `rsync` driven as asyncio subprocesses, so every setting of the user's
~/.ssh/config (agents, ProxyJump, ControlMaster for 2FA login nodes) applies. No home-made protocol.

    result = await run_script(target, "echo hello")          # bash on the target (this machine for local targets)
    await push(target, ["./nanochat", "./workbench"], "/abs/remote/dir/")
    await pull(target, "/abs/remote/dir/file", "./here/")

A script is sent on stdin and read whole by `bash -c 'eval "$(cat)"'` before it runs, so the commands it starts
never swallow the rest of it, whatever the user's login shell is. Failures raise `RemoteError` with a `kind`
(auth, unreachable, disk full, ...) and a one-line message; callers decide on the kind, never on the text.
"""

import asyncio
import enum
import os
import shlex
from dataclasses import dataclass

from workbench.remote.targets import Target

CONNECT_TIMEOUT_S = 15
REMOTE_BASH = "bash -c 'eval \"$(cat)\"'"


class ErrorKind(str, enum.Enum):
    AUTH = "auth"                      # the server refused our credentials
    UNREACHABLE = "unreachable"        # name does not resolve, refused, timed out
    NO_TOOL = "no_tool"                # ssh/rsync/sbatch missing where we need it
    SETUP_FAILED = "setup_failed"      # the target's `setup` line failed
    MISSING_PYTHON = "missing_python"
    MISSING_TORCH = "missing_torch"
    DISK_FULL = "disk_full"
    SBATCH_REJECTED = "sbatch_rejected"
    JOB_FAILED = "job_failed"
    COMMAND_FAILED = "command_failed"  # anything else; the message quotes the tool
    TIMEOUT = "timeout"


class RemoteError(Exception):
    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


def destination(target: Target) -> str:
    return f"{target.user}@{target.host}" if target.user else target.host


def ssh_options(target: Target) -> list[str]:
    """ssh's options for this target, without the destination. The user's own options come first: ssh keeps the
    first value it sees for an option, so theirs win over our defaults."""
    opts = list(target.ssh_options)
    if target.port != 22:
        opts += ["-p", str(target.port)]
    if target.identity_file:
        opts += ["-i", os.path.expanduser(target.identity_file)]
    return opts + ["-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=30"]


def shell_argv(target: Target) -> list[str]:
    if target.runs_here:
        return ["bash", "-c", 'eval "$(cat)"']
    return ["ssh", *ssh_options(target), destination(target), REMOTE_BASH]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def ssh_failure(target: Target, stderr: str) -> RemoteError:
    """ssh's exit status 255 means ssh itself failed; its message is all it gives to tell auth from network."""
    line = _last_line(stderr) or "ssh failed without a message"
    where = f"{destination(target)} (port {target.port})"
    if any(s in stderr for s in ("Permission denied", "Too many authentication failures", "Authentication failed",
                                 "Host key verification failed", "no matching host key")):
        return RemoteError(ErrorKind.AUTH, f"cannot log in to {where}: {line} — check the target's user and "
                                           f"identity_file, your ssh agent and ~/.ssh/config")
    return RemoteError(ErrorKind.UNREACHABLE, f"cannot reach {where}: {line}")


async def _exec(argv: list[str], stdin: bytes | None, timeout: float | None) -> Completed:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise RemoteError(ErrorKind.NO_TOOL, f"`{argv[0]}` is not installed on this machine") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as e:
        proc.kill()
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        raise RemoteError(ErrorKind.TIMEOUT, f"`{argv[0]}` did not finish within {timeout:g} s") from None
    return Completed(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


async def run_script(target: Target, script: str, *, timeout: float | None = 300) -> Completed:
    """Run a bash script on the target; its exit status is returned, ssh's own failures raise RemoteError."""
    result = await _exec(shell_argv(target), script.encode(), timeout)
    if result.returncode == 255 and not target.runs_here:
        raise ssh_failure(target, result.stderr)
    return result


def remote_path(target: Target, path: str) -> str:
    return path if target.runs_here else f"{destination(target)}:{path}"


async def rsync(target: Target, sources: list[str], dest: str, *, pull: bool = False, excludes=(),
                delete: bool = False, extra=(), timeout: float | None = 3600) -> Completed:
    """rsync -a (only what changed is sent) over the target's ssh. `pull` copies remote sources to a local dest."""
    argv = ["rsync", "-a", "--partial"]
    if not target.runs_here:
        argv += ["-z", "-e", shlex.join(["ssh", *ssh_options(target)])]
    argv += [f"--exclude={pattern}" for pattern in excludes]
    if delete:
        argv.append("--delete")
    argv += list(extra)
    if pull:
        argv += [remote_path(target, s) for s in sources] + [dest]
    else:
        argv += list(sources) + [remote_path(target, dest)]
    result = await _exec(argv, None, timeout)
    if result.returncode == 0:
        return result
    full = [line.strip() for line in result.stderr.splitlines()
            if "No space left on device" in line or "Disk quota exceeded" in line]
    if full:
        side = "this machine" if pull else f"{target.name} ({dest})"
        raise RemoteError(ErrorKind.DISK_FULL, f"disk full on {side}: {full[0]}")
    if result.returncode == 255 or (result.returncode == 12 and "ssh" in result.stderr and not target.runs_here):
        raise ssh_failure(target, result.stderr)
    raise RemoteError(ErrorKind.COMMAND_FAILED, f"rsync failed (exit {result.returncode}): {_last_line(result.stderr)}")

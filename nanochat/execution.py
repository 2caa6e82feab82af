"""Run model-written Python in a sandbox: `execute_code(code) -> ExecutionResult`.

Code a model writes is treated as hostile. Each call runs it in a new Python process (this file, run as a
script) in a fresh temporary directory, in a session of its own, and:

- limits it with rlimits: address space (`maximum_memory_bytes`), CPU seconds (the timeout + 1, so a loop dies
  even if this process does), file size, open files, no core dumps; it is killed when its parent thread goes;
- disables, before the code runs, what can hurt anything outside its directory: killing processes, fork/exec/
  spawn and subprocess, deleting, renaming, truncating or re-permissioning files, `open` for writing outside
  its directory, changing directory, sockets, and ctypes (the way around all of the above);
- when run as root, also gives it a network namespace of its own (no network at all) and, when the Python
  installation is readable by everyone, drops it to the `nobody` user;
- stops it at the timeout, then kills its process group and every process left in its session, and removes
  its directory. stdout and stderr are captured, each cut at `max_output_bytes` (the rest is read and
  dropped, so a flood neither blocks nor fills memory).

`success` means the program ran to its end: an exception, `sys.exit`, `os._exit`, a signal, the timeout or
running out of memory are all failures (a program that exits early has skipped what came after, e.g. tests).
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

MAX_OUTPUT_BYTES = 128 * 1024
GRACE_S = 2.0  # how long after the timeout we wait for pipes to close once the process tree is killed


@dataclass
class ExecutionResult:
    success: bool
    stdout: str
    stderr: str
    error: str | None = None  # why it failed, one line; None on success
    timeout: bool = False
    memory_exceeded: bool = False


# ---------------------------------------------------------------------------------------------------------------
# the caller's side


def execute_code(code: str, timeout: float = 5.0, maximum_memory_bytes: int | None = 256 * 2**20,
                 max_output_bytes: int = MAX_OUTPUT_BYTES) -> ExecutionResult:
    """Run `code` in a sandboxed process; returns within about timeout + 2 s whatever the code does."""
    workdir = tempfile.mkdtemp(prefix="nanochat-exec-")
    status_r, status_w = os.pipe()
    try:
        program = os.path.join(workdir, "program.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(code)
        drop_to = _unprivileged_ids()
        if drop_to:
            os.chown(workdir, *drop_to)
        limits = {"memory": maximum_memory_bytes, "cpu": int(timeout) + 1, "status_fd": status_w,
                  "parent": os.getpid(), "drop_to": drop_to}
        command = [sys.executable, "-I", os.path.abspath(__file__), program, json.dumps(limits)]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(status_w,), start_new_session=True)
        os.close(status_w)
        status_w = -1
        return _supervise(proc, status_r, timeout, max_output_bytes)
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(proc: subprocess.Popen, status_r: int, timeout: float, cap: int) -> ExecutionResult:
    """Wait for the program (killing it at the timeout), collect its output and status."""
    outputs = [bytearray(), bytearray()]
    dropped = [0, 0]
    readers = [threading.Thread(target=_drain, args=(stream, outputs[i], dropped, i, cap), daemon=True)
               for i, stream in enumerate((proc.stdout, proc.stderr))]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_tree(proc.pid)
    proc.wait()
    for reader in readers:
        reader.join(GRACE_S)  # a pipe held open by an escaped grandchild must not hang us
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    stdout, stderr = (_text(outputs[i], dropped[i]) for i in range(2))
    status = _read_status(status_r)
    if timed_out:
        return ExecutionResult(False, stdout, stderr, f"timed out after {timeout:g} s", timeout=True)
    return _result(proc.returncode, status, stdout, stderr)


def _result(returncode: int, status: dict, stdout: str, stderr: str) -> ExecutionResult:
    outcome = status.get("outcome")
    if outcome == "ok" and returncode == 0:
        return ExecutionResult(True, stdout, stderr)
    if outcome == "memory":
        return ExecutionResult(False, stdout, stderr, "memory limit exceeded (MemoryError)", memory_exceeded=True)
    if outcome in ("exception", "exit"):
        return ExecutionResult(False, stdout, stderr, status.get("detail", outcome))
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        cpu = " (CPU time limit)" if name == "SIGXCPU" else ""
        return ExecutionResult(False, stdout, stderr, f"killed by {name}{cpu}")
    return ExecutionResult(False, stdout, stderr, f"exited with status {returncode} before the end of the program")


def _drain(stream, buffer: bytearray, dropped: list, i: int, cap: int) -> None:
    """Read a pipe to its end, keeping the first `cap` bytes and counting the rest."""
    try:
        while chunk := stream.read1(65536):
            room = cap - len(buffer)
            buffer.extend(chunk[:max(room, 0)])
            dropped[i] += max(len(chunk) - max(room, 0), 0)
    except (OSError, ValueError):  # closed under us after the grace period
        pass


def _text(data: bytearray, dropped: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + (f"\n[output truncated: {dropped:,} more bytes]" if dropped else "")


def _read_status(fd: int) -> dict:
    os.set_blocking(fd, False)
    try:
        raw = os.read(fd, 65536)
        return json.loads(raw.decode("utf-8", errors="replace") or "{}")
    except (OSError, ValueError):  # nothing written (the program died first) or garbage
        return {}


def _kill_tree(pid: int) -> None:
    """SIGKILL the program's process group, then any process still in its session (Linux: read from /proc)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not os.path.isdir("/proc"):
        return
    for _ in range(10):  # a fork racing the kill can leave a new process: sweep until the session is empty
        left = [p for p in _session_members(pid) if p != pid]
        if not left:
            return
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
        if (session == sid or pgrp == sid) and state != b"Z":
            members.append(int(entry))
    return members


_IDS_CACHE: list = []


def _unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) of `nobody` when we are root and it can run this Python; else None (no drop)."""
    if _IDS_CACHE:
        return _IDS_CACHE[0]
    ids = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd

        try:
            entry = pwd.getpwnam("nobody")
            ids = (entry.pw_uid, entry.pw_gid)
        except KeyError:
            ids = None
        paths = [sys.executable, os.path.abspath(__file__), os.path.dirname(os.__file__)]
        if ids and not all(_world_readable(p) for p in paths):
            ids = None
    _IDS_CACHE.append(ids)
    return ids


def _world_readable(path: str) -> bool:
    """Every directory on the way to `path` is searchable by others and the file itself readable."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        mode = os.stat(os.sep.join(parts[:i]) or os.sep).st_mode
        if not mode & 0o001 or (i == len(parts) and not mode & 0o004):
            return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# the sandboxed process's side (this file run as a script)


def _child_main(program: str, limits: dict) -> None:
    import ctypes  # loaded before the guard blocks it: the namespace and death-signal calls need it

    status_fd = limits["status_fd"]
    _child_isolate(ctypes, limits)
    with open(program, encoding="utf-8") as f:
        source = f.read()
    _child_guard()
    outcome, detail = "ok", ""
    try:
        exec(compile(source, program, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except MemoryError:
        outcome = "memory"
    except SystemExit as e:
        outcome, detail = "exit", f"the program called exit({e.code!r}) before its end"
    except BaseException as e:  # the program's own error: its traceback, from the program's frames down
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        outcome, detail = "exception", f"{type(e).__name__}: {e}"[:500]
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    _REAL_WRITE(status_fd, json.dumps({"outcome": outcome, "detail": detail}).encode())
    _REAL_EXIT(0)


def _child_isolate(ctypes, limits: dict) -> None:
    """Resource limits, network namespace and user drop (root only), death signal; before the code is read."""
    import resource

    if limits["memory"] is not None and sys.platform != "darwin":
        _cap(resource.RLIMIT_AS, limits["memory"])
        _cap(resource.RLIMIT_DATA, limits["memory"])
    _cap(resource.RLIMIT_CPU, limits["cpu"])
    _cap(resource.RLIMIT_FSIZE, 64 * 2**20)
    _cap(resource.RLIMIT_NOFILE, 64)
    _cap(resource.RLIMIT_CORE, 0)
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0:
        libc.unshare(0x40000000)  # CLONE_NEWNET: an empty network namespace; ignored if not permitted
    if limits["drop_to"]:
        uid, gid = limits["drop_to"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        _cap(resource.RLIMIT_NPROC, 256)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, set after the uid change (which clears it)
    if os.getppid() != limits["parent"]:
        _REAL_EXIT(1)  # the caller is already gone


_REAL_WRITE, _REAL_EXIT = os.write, os._exit
_OS_NAMES = [
    "kill", "killpg", "fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle", "execlp", "execlpe",
    "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "remove", "unlink", "rmdir", "removedirs", "rename", "renames",
    "replace", "truncate", "ftruncate", "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot",
    "chdir", "fchdir", "setsid", "setpgid", "setuid", "setgid", "putenv", "unsetenv", "link", "symlink",
    "_exit", "abort", "pidfd_open",
]
_DISABLED = {
    os: _OS_NAMES,
    shutil: ["rmtree", "move", "chown", "copytree"],
    sys.modules.get("posix", os): _OS_NAMES,
    subprocess: ["Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"],
}
_BLOCKED_MODULES = ["ctypes", "_ctypes", "socket", "_socket", "ssl", "multiprocessing", "_posixsubprocess",
                    "resource", "signal", "_signal", "pty", "faulthandler", "mmap", "psutil"]


def _cap(which: int, value: int) -> None:
    import resource

    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def _refuse(name: str, *args, **kwargs):
    raise PermissionError(f"{name} is disabled in the sandbox")


def _child_guard() -> None:
    """Replace the dangerous functions and block the dangerous modules, in this process, for good."""
    import builtins
    import io

    for module, names in _DISABLED.items():
        for name in names:
            if hasattr(module, name):
                setattr(module, name, functools.partial(_refuse, f"{module.__name__}.{name}"))
    for name in _BLOCKED_MODULES:
        sys.modules[name] = None  # `import socket` now raises ImportError
    _WORKDIR.append(os.path.realpath(os.getcwd()))
    builtins.open = io.open = _open_inside
    os.open = _os_open_inside


_WORKDIR: list[str] = []  # the sandbox's directory, once the guard is on
_REAL_OPEN, _REAL_OS_OPEN = open, os.open
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _open_inside(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        _check_inside(file)
    return _REAL_OPEN(file, mode, *args, **kwargs)


def _os_open_inside(path, flags, *args, **kwargs):
    if flags & _WRITE_FLAGS:
        _check_inside(path)
    return _REAL_OS_OPEN(path, flags, *args, **kwargs)


def _check_inside(path) -> None:
    workdir, target = _WORKDIR[0], os.path.realpath(os.fsdecode(path))
    if os.path.commonpath([target, workdir]) != workdir:
        raise PermissionError(f"writing {target} is not allowed: the sandbox may write only inside {workdir}")


if __name__ == "__main__":
    _child_main(sys.argv[1], json.loads(sys.argv[2]))

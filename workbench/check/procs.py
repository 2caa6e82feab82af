"""The processes below the check worker: their states, the tree below a process, and killing all of it.

Linux reads /proc; where there is none (macOS, the BSDs) the same answers come from `ps`. On Linux the worker
is also a child subreaper, so processes a check leaves behind (a new session, a double fork) are re-parented to
it and still found below it; elsewhere a process whose parent died is re-parented to init and out of reach,
which is why the warm spare also kills its own descendants before it exits (workbench/check/spare.py).

    process_state(pid)          # "T" stopped, "Z" zombie, "R"/"S"/... running or sleeping, "" unknown
    descendants(pid)            # every live process below pid
    virtual_size(pid)           # bytes of address space (ps; the worker reads /proc/self/statm first)
    kill_descendants(keep=())   # SIGKILL everything below this process (but `keep`) and reap it
"""

import functools
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_CHILD_SUBREAPER = 36
SWEEP_S = 2.0  # the longest kill_descendants keeps killing (a fork bomb keeps making new ones)


def has_proc() -> bool:
    return os.path.isfile(f"/proc/{os.getpid()}/stat")


def ps_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state letter)} of every process, from `ps` (POSIX options, macOS and Linux alike)."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,stat="], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    table = {}
    for row in out.splitlines():
        fields = row.split()
        if len(fields) >= 3 and fields[0].isdigit() and fields[1].isdigit():
            table[int(fields[0])] = (int(fields[1]), fields[2][:1])
    return table


def proc_table() -> dict[int, tuple[int, str]]:
    """The same table as ps_table, read from /proc."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def process_table() -> dict[int, tuple[int, str]]:
    return proc_table() if has_proc() else ps_table()


def process_state(pid: int) -> str:
    """The one-letter state of a process (R running, S sleeping, T stopped, Z zombie, ...), "" if unknown."""
    if has_proc():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0].decode()
        except (OSError, IndexError):
            return ""
    return ps_table().get(pid, (0, ""))[1]


def virtual_size(pid: int) -> int:
    """A process's virtual memory size in bytes from `ps` (the fallback where there is no /proc), 0 if unknown."""
    try:
        out = subprocess.run(["ps", "-o", "vsz=", "-p", str(pid)], capture_output=True, text=True, timeout=10,
                             check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 0
    return int(out) * 1024 if out.isdigit() else 0  # ps reports KiB


def descendants(pid: int, table: dict | None = None) -> list[int]:
    """Every live (not zombie) process below `pid`."""
    children: dict[int, list[int]] = {}
    for child, (parent, state) in (process_table() if table is None else table).items():
        if state != "Z":
            children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(keep=()) -> int:
    """SIGKILL every process below this one (but those in `keep`, the warm spare) and reap the ones re-parented
    to it, until none is left. Returns how many were killed."""
    killed, end = 0, time.monotonic() + SWEEP_S
    while time.monotonic() < end:
        procs = [pid for pid in descendants(os.getpid()) if pid not in keep]
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        while True:  # reap: the killed orphans are this process's children now
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not procs:
            break
        time.sleep(0.005)
    return killed


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL, on_gone=None) -> None:
    """Linux: have the kernel send `signum` to this process when its parent (the worker, the runner) dies, so no
    check outlives it: SIGKILL ends this process alone; a process that must end its whole group asks for a signal
    it handles. A parent already gone (it died before prctl took effect): `on_gone()`, by default exit."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        (on_gone or functools.partial(os._exit, 1))()


def become_subreaper() -> bool:
    """Linux: processes a check leaves behind whose parent dies (a grandchild in a session of its own, a
    double-forked daemon) are re-parented to this process instead of init, so kill_descendants finds them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False

"""Files written so that a reader never sees half of them, and files read without trusting what a path points to.

    atomic_write(path, text_or_bytes)          temp file in the same folder, fsync, os.replace; mode kept
    with atomic_path(path) as tmp: torch.save(obj, tmp)      the same, for writers that want a path
    read_regular_file(path, max_bytes)          bytes of a regular file; FIFOs, devices, folders, too big: refused
    old = atomic_exchange(path, data)           like atomic_write, but the replaced file is kept (at `old`)
    remove_stale_temps(path)                    temp files beside `path` left by a writer that was killed

The temp file is removed whatever happens (an exception, a KeyboardInterrupt, a write that is abandoned), and
the file keeps the mode it had; a new file gets the usual 0666 minus the umask (mkstemp alone would give 0600).
"""

import ctypes
import errno
import glob
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class FileRefused(OSError):
    """read_regular_file would not read this path (not a regular file, or too big); the message says why."""


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy with threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _mode_for(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def _commit(tmp: str, path: str, before_replace: Callable[[str], bool] | None) -> bool:
    _fsync(tmp)
    os.chmod(tmp, _mode_for(path))
    if before_replace is not None and before_replace(tmp) is False:
        return False
    os.replace(tmp, path)
    return True


@contextmanager
def atomic_path(path) -> Iterator[str]:
    """A temp path beside `path` to write to; when the block ends without an exception it replaces `path`."""
    path = os.fspath(path)
    tmp = _temp_beside(path)
    try:
        yield tmp
        _commit(tmp, path, None)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write(path, data: str | bytes, *, encoding: str = "utf-8", errors: str = "strict",
                 before_replace: Callable[[str], bool] | None = None) -> bool:
    """Replace `path`'s content with `data` in one step. `before_replace(tmp)` is called just before the rename;
    returning False abandons the write (the temp file is removed; returns False). Newlines are written as given."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode(encoding, errors)
    tmp = _temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        return _commit(tmp, path, before_replace)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def read_regular_file(path, max_bytes: int) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`; raises FileRefused otherwise (and the
    usual OSError when it cannot be opened). Opening never blocks: a FIFO is refused, not waited on."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a file")
            raise FileRefused(f"{path} is {kind}, not a regular file")
        if info.st_size > max_bytes:
            raise FileRefused(f"{path} is {info.st_size:,} bytes; at most {max_bytes:,} are read")
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = None
            data = f.read(max_bytes + 1)
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > max_bytes:  # it grew while being read
        raise FileRefused(f"{path} is more than {max_bytes:,} bytes; at most {max_bytes:,} are read")
    return data


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a, b) -> None:
    """Swap the files at paths `a` and `b` in one step (Linux renameat2 RENAME_EXCHANGE). Raises OSError with
    errno ENOTSUP where the system or the file system cannot do it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        raise OSError(errno.ENOTSUP, "renameat2 is not available here") from None
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(errno.ENOTSUP, f"cannot swap files on this file system ({os.strerror(err)})")
        raise OSError(err, os.strerror(err), os.fspath(b))


def atomic_exchange(path, data: bytes, *, before_swap: Callable[[str], bool] | None = None) -> str | None:
    """Put `data` at `path` in one step, like atomic_write, and return the path of a temp file beside it that now
    holds the file which was at `path` at that instant: whatever anyone saved there up to the swap is not unlinked
    but handed to the caller, who reads it and removes or keeps it. A writer that still has the old file open
    (an editor saving in place) writes into that file. Where files cannot be swapped (not Linux, or a file system
    without RENAME_EXCHANGE) the old file is hard-linked to the returned path and then replaced: the same, except
    for a save that lands between those two steps. `path` must exist. `before_swap(tmp)` is called just before
    the swap; returning False abandons it (the temp file is removed; returns None)."""
    path = os.fspath(path)
    tmp = _temp_beside(path)
    swapped = False
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        _fsync(tmp)
        os.chmod(tmp, _mode_for(path))
        if before_swap is not None and before_swap(tmp) is False:
            return None
        try:
            exchange(tmp, path)
            swapped = True
            return tmp
        except OSError as e:
            if e.errno != errno.ENOTSUP:
                raise
        old = _temp_beside(path)
        os.unlink(old)
        os.link(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.unlink(old)
            raise
        return old
    finally:
        if not swapped and os.path.lexists(tmp):
            os.unlink(tmp)


def remove_stale_temps(path, older_than_s: float = 300.0) -> int:
    """Remove the temp files (`.NAME.*.tmp`) that writes of `path` left beside it when the writer was killed,
    if they were last renamed or written more than `older_than_s` ago (a write takes milliseconds; the inode's
    change time is used, which a rename updates and an old file's mtime would not). Returns how many."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    removed, now = 0, time.time()
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        try:
            if now - os.lstat(tmp).st_ctime > older_than_s:
                os.unlink(tmp)
                removed += 1
        except OSError:
            pass
    return removed

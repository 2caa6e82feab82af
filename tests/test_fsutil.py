"""nanochat/fsutil.py: atomic writes keep the mode and never leave a temp file; read_regular_file refuses what is
not a small regular file without blocking on it."""

import os
import stat

import pytest

from nanochat.fsutil import (FileRefused, atomic_exchange, atomic_path, atomic_write, read_regular_file,
                             remove_stale_temps)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_content_and_keeps_the_mode(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text("old\n")
    path.chmod(0o640)
    assert atomic_write(path, "new\r\nline\n") is True
    assert path.read_bytes() == b"new\r\nline\n"  # newlines written as given
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_a_new_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


def test_temp_file_is_removed_when_the_writer_fails(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"previous" and leftovers(tmp_path) == []
    with pytest.raises(UnicodeEncodeError):
        atomic_write(path, "\udcff")  # a lone surrogate cannot be encoded: fails before the rename
    assert path.read_bytes() == b"previous" and leftovers(tmp_path) == []


def test_before_replace_can_abandon_the_write(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("kept")
    seen = []
    assert atomic_write(path, "dropped", before_replace=lambda tmp: seen.append(open(tmp).read()) or False) is False
    assert seen == ["dropped"] and path.read_text() == "kept" and leftovers(tmp_path) == []


def test_atomic_path_writes_through_a_path(tmp_path):
    with atomic_path(tmp_path / "out.bin") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"\x00\x01")
    assert (tmp_path / "out.bin").read_bytes() == b"\x00\x01" and leftovers(tmp_path) == []


def test_read_regular_file_reads_small_files_and_refuses_the_rest(tmp_path):
    small = tmp_path / "a.py"
    small.write_bytes(b"x = 1\n")
    assert read_regular_file(small, 100) == b"x = 1\n"
    with pytest.raises(FileRefused, match="at most 3"):
        read_regular_file(small, 3)
    with pytest.raises(FileRefused, match="folder"):
        read_regular_file(tmp_path, 100)
    with pytest.raises(FileRefused, match="device"):
        read_regular_file("/dev/zero", 100)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match="FIFO"):  # no writer: a plain open() would block here forever
        read_regular_file(fifo, 100)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", 100)
    assert issubclass(FileRefused, OSError)


def test_atomic_exchange_hands_back_the_replaced_file_even_one_written_into_after_the_swap(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("old")
    os.chmod(path, 0o640)
    writer = open(path, "a")  # an editor that opened the file to save in place, before the swap
    old = atomic_exchange(path, b"new")
    writer.write(" and more")
    writer.close()
    assert path.read_text() == "new" and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(old).read() == "old and more"  # not lost: the caller decides what to do with it
    os.unlink(old)
    assert atomic_exchange(path, b"dropped", before_swap=lambda tmp: False) is None
    assert path.read_text() == "new" and leftovers(tmp_path) == []


def test_remove_stale_temps_only_removes_old_temp_files_of_that_file(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("x")
    (tmp_path / ".notes.md.abc123.tmp").write_text("left by a killed writer")
    (tmp_path / ".other.md.abc123.tmp").write_text("someone else's")
    assert remove_stale_temps(path) == 0  # just written: maybe a write in progress
    assert remove_stale_temps(path, older_than_s=0.0) == 1
    assert sorted(os.listdir(tmp_path)) == [".other.md.abc123.tmp", "notes.md"]

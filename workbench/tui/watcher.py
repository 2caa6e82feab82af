"""Watch the learner's workspace for saves, and prove at start-up that file events really arrive.

Native file events (inotify, FSEvents, ReadDirectoryChangesW) never arrive on some file systems: WSL's `/mnt/*`,
NFS, SMB. There a watcher waits forever and the learner thinks the workbench is broken. So the TUI first writes a
probe file next to the learner's file and waits up to a second for its event; if none comes, it polls instead
(watchfiles' `force_polling`) and says so in the status bar.

The directory is watched (not the files themselves): editors that save by writing a temp file and renaming it
over the original replace the inode, and a watch on the old inode would go quiet.

Polling is done here rather than by watchfiles' `force_polling`: its poller compares modification times to the
second, so a second save within the same second as the one before goes unseen. We stat the few watched files
every 0.1 s and compare nanosecond mtime, size and inode.
"""

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import watchfiles

PROBE_PREFIX = ".workbench-probe-"
DEBOUNCE_MS = 50  # watchfiles' default of 1600 ms would be most of our latency budget
STEP_MS = 10
POLL_DELAY_MS = 100


class WorkspaceWatcher:
    """Yields the names of watched files that changed in one directory (not recursive)."""

    def __init__(self, directory: Path, names: Iterable[str], *, force_polling: bool | None = False):
        """`force_polling=None`: poll when WATCHFILES_FORCE_POLLING is set (as watchfiles itself does)."""
        self.directory = Path(directory)
        self.names = set(names)
        self.polling = force_polling if force_polling is not None else "WATCHFILES_FORCE_POLLING" in os.environ
        self.probe_path = self.directory / f"{PROBE_PREFIX}{os.getpid()}"
        self._probe_seen = asyncio.Event()
        self._stop = asyncio.Event()

    def _wanted(self, change: watchfiles.Change, path: str) -> bool:
        name = os.path.basename(path)
        return name in self.names or name == self.probe_path.name

    async def changes(self) -> AsyncIterator[set[str]]:
        """Each batch of changes (debounced by DEBOUNCE_MS) as a set of file names; probe events are swallowed."""
        batches = self._poll() if self.polling else self._native()
        async for names in batches:
            if self.probe_path.name in names:
                self._probe_seen.set()
                names.discard(self.probe_path.name)
            if names:
                yield names

    async def _native(self) -> AsyncIterator[set[str]]:
        async for batch in watchfiles.awatch(
            self.directory, watch_filter=self._wanted, debounce=DEBOUNCE_MS, step=STEP_MS, force_polling=False,
            recursive=False, stop_event=self._stop,
        ):
            yield {os.path.basename(path) for _, path in batch}

    def _stat_all(self) -> dict[str, tuple[int, int, int] | None]:
        state = {}
        for name in self.names | {self.probe_path.name}:
            try:
                st = os.stat(self.directory / name)
                state[name] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                state[name] = None
        return state

    async def _poll(self) -> AsyncIterator[set[str]]:
        last = self._stat_all()
        while not self._stop.is_set():
            await asyncio.sleep(POLL_DELAY_MS / 1000)
            now = self._stat_all()
            changed = {name for name, state in now.items() if state != last.get(name)}
            last = now
            if changed:
                yield changed

    def stop(self) -> None:
        self._stop.set()

    async def probe(self, timeout: float = 1.0) -> bool | None:
        """Write the probe file until its event comes back; True when it does within `timeout` seconds, None when
        the probe file cannot be written here (a read-only folder: nothing to prove).

        `changes()` must be running concurrently. The watcher may still be registering when the first write
        lands, so the probe is rewritten every 150 ms until the deadline.
        """
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    self.probe_path.write_text(f"{time.time()}\n")
                except OSError:
                    return None
                wait = min(0.15, max(0.0, deadline - time.monotonic()))
                try:
                    await asyncio.wait_for(self._probe_seen.wait(), wait)
                    return True
                except (TimeoutError, asyncio.TimeoutError):
                    continue
            return self._probe_seen.is_set()
        finally:
            try:
                self.probe_path.unlink()
            except OSError:
                pass

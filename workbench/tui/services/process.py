"""One child process of the TUI, started with asyncio and streamed line by line; killed with its process group
when the worker awaiting it is cancelled (the app quits, or a newer job takes over). Nothing here blocks."""

import asyncio
import os
import signal
from collections.abc import Callable


async def stream_lines(command: list[str], on_line: Callable[[str], None], *, env: dict | None = None,
                       started: Callable[[asyncio.subprocess.Process], None] | None = None) -> int:
    """Run `command`, calling `on_line` with each line of its stdout and stderr; return its exit code."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True)  # its own process group: a signal reaches torchrun's children too
    if started is not None:
        started(process)
    try:
        async for raw in process.stdout:
            on_line(raw.decode("utf-8", "replace").rstrip("\n"))
        return await process.wait()
    except asyncio.CancelledError:
        signal_group(process, signal.SIGKILL)
        await asyncio.shield(process.wait())  # reaped, so no transport outlives the event loop
        raise


def signal_group(process: asyncio.subprocess.Process | None, sig: int) -> bool:
    """Send `sig` to the process's group; False when it has already gone."""
    if process is None or process.returncode is not None:
        return False
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True

"""Benchmark of the TUI: start-up to first paint, save-to-panel latency against the runner's own time, and the
event loop's lag while checks run. Prints figures; targets from the TUI issue are printed beside them.

    python -m workbench.bench.tui [--startups 5] [--saves 10]

1. Start-up: `python -m workbench.tui.main` in a pseudo-terminal (100×30), timed from spawn to the first
   frame that shows the screen bar. Target ≤ 1.5 s.
2. Save to panel: the app runs headless with a warm runner; the learner file is saved alternately in two
   versions, and each save is timed from the write to the next-step panel showing the new result (the
   panel's refresh included). After each save the same runner is timed on its own on the same text
   (`Runner.run`: no watcher, no UI), interleaved so both see the same machine load. Two cases: the skeleton
   with one method written (the next-TODO path) and the complete reference (every check and a training step).
   Target: TUI p50 within 0.3 s of the runner's p50.
3. Event-loop lag: while those checks run, a probe sleeps 10 ms at a time on the app's event loop and records
   how late it wakes up. Target p99 < 100 ms.
"""

import argparse
import asyncio
import os
import pty
import select
import shutil
import statistics
import struct
import sys
import tempfile
import termios
import time
from fcntl import ioctl
from pathlib import Path


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# ---- 1. start-up to first paint ------------------------------------------------------------------------------

def time_startup(workspace: Path, timeout: float = 30.0) -> float:
    """Seconds from spawning the TUI in a pty until its screen bar has been drawn."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the TUI, on the pty
        os.chdir(workspace)
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "workbench.tui.main"])
    ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    start, seen = time.perf_counter(), b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
                if b"Companion" in seen and b"Chat" in seen:
                    return time.perf_counter() - start
        raise RuntimeError("the TUI did not paint within the timeout")
    finally:
        os.write(fd, b"\x11")  # ctrl+q
        deadline = time.time() + 10
        while time.time() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            try:
                if select.select([fd], [], [], 0.05)[0]:
                    os.read(fd, 65536)
            except OSError:
                pass
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


# ---- 2 and 3. save to panel, event-loop lag ------------------------------------------------------------------

async def lag_probe(samples: list[float], stop: asyncio.Event, period: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(period)
        samples.append(loop.time() - t - period)


async def time_saves(workspace: Path, scratch: Path, versions: list[str], saves: int, runner):
    """Per save: the TUI's save-to-panel time, then (interleaved, same machine state) the runner alone on the
    same text in another file. Returns (tui times, runner times, event-loop lags)."""
    from workbench.tui.app import WorkbenchApp

    learner = workspace / "learner_gpt.py"
    app = WorkbenchApp(workspace, runner=runner)
    tui, alone, lags = [], [], []
    async with app.run_test(size=(100, 30)) as pilot:
        while app.report is None or app.checking:
            await pilot.pause(0.05)
        stop = asyncio.Event()
        probe = asyncio.create_task(lag_probe(lags, stop))
        for i in range(saves):
            text = versions[i % len(versions)]
            before = app.report
            t0 = time.perf_counter()
            learner.write_text(text)
            while app.report is before:
                await asyncio.sleep(0.002)
            await pilot.pause()  # the panel's refresh
            tui.append(time.perf_counter() - t0)
            await pilot.pause(0.5)  # let the aftermath (STATUS.md ticks, reload) settle, as between real saves
            scratch.write_text(text)
            t0 = time.perf_counter()
            await runner.run(scratch)
            alone.append(time.perf_counter() - t0)
        stop.set()
        await probe
    return tui, alone, lags


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--startups", type=int, default=5)
    parser.add_argument("--saves", type=int, default=10)
    args = parser.parse_args(argv)

    from workbench.check.client import Runner
    from workbench.course.methods import REFERENCE_FILE, reference_method, replace_method
    from workbench.course.workspace import init_workspace

    root = Path(tempfile.mkdtemp(prefix="bench_tui_"))
    try:
        ws = init_workspace(root / "ws")
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")

        # 1. start-up (the first one also pays for cold caches; all are reported)
        startups = [time_startup(ws.directory) for _ in range(args.startups)]
        print(f"start-up to first paint: p50 {statistics.median(startups):.2f} s, max {max(startups):.2f} s "
              f"over {len(startups)} starts  (target ≤ 1.5 s)")

        # 2. and 3.
        skeleton = ws.learner_file.read_text()
        one_method = replace_method(skeleton, "GPT.__init__", reference_method("GPT.__init__"))
        reference = REFERENCE_FILE.read_text()
        cases = [("skeleton / one method (next TODO)", [one_method, skeleton], args.saves),
                 ("complete file (all checks + a step)", [reference, reference + "\n# saved again\n"],
                  max(2, args.saves // 2))]
        runner = Runner()
        t0 = time.perf_counter()
        runner.wait_ready()
        print(f"runner warm-up (torch + reference, once per TUI session): {time.perf_counter() - t0:.1f} s")
        scratch = root / "direct"
        scratch.mkdir()
        all_lags = []
        for name, versions, saves in cases:
            ws.learner_file.write_text(skeleton)
            tui_times, runner_times, lags = asyncio.run(
                time_saves(ws.directory, scratch / "learner_gpt.py", versions, saves, runner))
            all_lags += lags
            r50, t50 = statistics.median(runner_times), statistics.median(tui_times)
            print(f"{name}:")
            print(f"  runner alone:            p50 {r50:.3f} s, p90 {pct(runner_times, 90):.3f} s over {saves} checks")
            print(f"  save → panel in the TUI: p50 {t50:.3f} s, p90 {pct(tui_times, 90):.3f} s over {saves} saves")
            print(f"  TUI overhead at p50: {t50 - r50:+.3f} s  (target ≤ 0.3 s: watcher, message, render)")
        runner.close()
        lags = all_lags
        print(f"event-loop lag during checks: p50 {1000 * statistics.median(lags):.1f} ms, "
              f"p99 {1000 * pct(lags, 99):.1f} ms, max {1000 * max(lags):.1f} ms over {len(lags)} samples "
              f"(target p99 < 100 ms)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

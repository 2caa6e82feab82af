"""Benchmark: save-to-result of a track file's check, a fresh child per check (cold) vs the runner's warm spare.

    python -m workbench.bench.track_check [--reps 3] [--files learner_muon.py,learner_adamw.py]

Each file is a verbatim copy of its reference module (a check that passes every row). The two ways alternate
within one run, so both see the same machine load:
- cold: spares off, as the CLI's one-shot `check` runs: the check starts a child, which imports torch first;
- warm: spares on (`prestart()`, as the TUI): the runner's spare has imported torch, torch.optim and
  torch._dynamo and waits; the clock starts only once it is ready (a learner edits between saves).
The clock runs from writing the file to the result in hand. Prints each run, then the p50 of each way per file.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from workbench.tracks import runner
from workbench.tracks.base import available_track_specs


def reference_copies(names: list[str]) -> dict[str, str]:
    """{learner file name: reference source} for the named track files."""
    files = {tf.learner_file: tf for spec in available_track_specs() for tf in spec.files}
    unknown = [n for n in names if n not in files]
    if unknown:
        raise SystemExit(f"unknown track file(s): {', '.join(unknown)} (known: {', '.join(sorted(files))})")
    return {n: files[n].reference_path().read_text() for n in names}


def wait_for_spare(limit_s: float = 300.0) -> float:
    """Seconds until the spare has imported everything (the learner's thinking time, not timed)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        spare = runner.spare_child()
        if spare is not None and spare.ready():
            break
        time.sleep(0.05)
    return time.monotonic() - start


def save_and_check(path: Path, source: str) -> tuple[float, dict]:
    start = time.monotonic()
    path.write_text(source)
    result = runner.check_track_file(str(path))
    return time.monotonic() - start, result


def measure(name: str, source: str, folder: Path, reps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    path = folder / name
    for rep in range(reps):
        for way in ("cold", "warm"):
            if way == "warm":
                runner.prestart()
                waited = wait_for_spare()
            else:
                runner.close_spares()
                waited = 0.0
            elapsed, result = save_and_check(path, source)
            t = result.get("timings", {})
            print(f"{name} {way} #{rep + 1}: {elapsed:6.2f} s  ok={result.get('ok')}  child={t.get('child')}  "
                  f"child_ready_s={t.get('child_ready_s', 0):.2f}  check_s={t.get('check_s', 0):.2f}  "
                  f"(spare ready after {waited:.1f} s)", flush=True)
            times[way].append(elapsed)
    runner.close_spares()
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench.track_check", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--files", default="learner_muon.py,learner_adamw.py")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.files.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="wb-bench-track-") as tmp:
        sources = reference_copies(names)
        summary = {name: measure(name, source, Path(tmp), args.reps) for name, source in sources.items()}
    print("\nsave-to-result p50 (s):")
    for name, times in summary.items():
        cold, warm = statistics.median(times["cold"]), statistics.median(times["warm"])
        print(f"  {name:24s} cold {cold:6.2f}   warm {warm:6.2f}   saved {cold - warm:6.2f} ({cold / warm:.1f}x)")


if __name__ == "__main__":
    main()

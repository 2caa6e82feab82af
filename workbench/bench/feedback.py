"""Benchmark: how long from saving the learner's file to feedback, warm worker vs a fresh training process.

    python -m workbench.bench.feedback [--reps 10] [--fresh-reps 3] [--scenarios skeleton,complete]

For each scenario the learner file is (re)written and the clock runs until the result is in:
- warm: the check through workbench.check.client's warm worker (what the TUI does on every save);
- fresh: the old way, a new `python -m nanochat.scripts.base_train --depth=4 --max_seq_len=512
  --device_batch_size=1 --total_batch_size=512 --num_iterations=1 --model FILE` process, until it exits.
The two alternate within one run, so both see the same machine load. Scenarios: `skeleton` (the untouched
template: the answer is the next TODO) and `complete` (the reference written out as the learner's file: every
check plus one optimizer step). Prints p50/p90 of each and the ratio of the p50s. Everything runs in a temporary
NANOCHAT_BASE_DIR (the embedded tokenizer is trained there once, before the clock starts).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
FRESH_CMD = ["-m", "nanochat.scripts.base_train", "--depth=4", "--max_seq_len=512", "--device_batch_size=1",
             "--total_batch_size=512", "--num_iterations=1"]


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-q * len(ordered) // 100))
    return ordered[int(rank) - 1]


def learner_source(scenario: str) -> str:
    if scenario == "skeleton":
        return (ROOT / "workbench" / "course" / "templates" / "learner_gpt.py").read_text()
    return (ROOT / "nanochat" / "gpt.py").read_text()


def write_learner(path: pathlib.Path, scenario: str, rep: int) -> None:
    # a different file every time (a comment), as when the learner saves an edit
    path.write_text(learner_source(scenario) + f"\n# edit {rep}\n")


def time_warm(runner, path, scenario, rep) -> tuple[float, str]:
    t0 = time.perf_counter()
    write_learner(path, scenario, rep)
    result = runner.run_sync(path, steps=1)
    seconds = time.perf_counter() - t0
    if scenario == "skeleton":
        todo = (result.get("next_todo") or {}).get("qualname")
        ok = todo == "GPT.__init__"
        what = f"next TODO {todo}"
    else:
        ok = result.get("ok") is True
        what = "all components pass" if ok else f"NOT ok: {result.get('lead') or result.get('error')}"
    return seconds, ("" if ok else "unexpected: ") + what


def time_fresh(path, scenario, rep, env, timeout) -> tuple[float, str]:
    t0 = time.perf_counter()
    write_learner(path, scenario, rep)
    proc = subprocess.run([sys.executable, *FRESH_CMD, "--model", str(path)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=path.parent)
    seconds = time.perf_counter() - t0
    if scenario == "skeleton":
        ok = proc.returncode != 0 and "TODO" in (proc.stderr + proc.stdout)
        what = "exits naming the TODO"
    else:
        ok = proc.returncode == 0
        what = "trained 1 step" if ok else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    return seconds, ("" if ok else "unexpected: ") + what


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="time save-to-feedback: warm worker vs a fresh base_train process")
    parser.add_argument("--reps", type=int, default=10, help="warm runs per scenario (default 10)")
    parser.add_argument("--fresh-reps", type=int, default=3, help="fresh-process runs per scenario (default 3)")
    parser.add_argument("--scenarios", default="skeleton,complete", help="comma-separated: skeleton, complete")
    parser.add_argument("--fresh-timeout", type=float, default=900, help="seconds allowed per fresh process")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        if s not in ("skeleton", "complete"):
            parser.error(f"unknown scenario {s!r}: choose skeleton or complete")
    if args.reps < 1 or args.fresh_reps < 0:
        parser.error("--reps must be at least 1 and --fresh-reps at least 0")

    from workbench.check.client import Runner

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(work / "base"), PYTHONPATH=str(ROOT))
    os.environ["NANOCHAT_BASE_DIR"] = env["NANOCHAT_BASE_DIR"]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before the run; python {sys.version.split()[0]}")
    t0 = time.perf_counter()
    runner = Runner(timeout=600)
    info = runner.wait_ready()
    print(f"warm worker ready in {time.perf_counter() - t0:.1f} s (first start trains the embedded tokenizer; "
          f"reference precompute {info.get('reference_s')} s) — not counted below\n")

    figures = {}
    try:
        for scenario in scenarios:
            path = work / f"{scenario}" / "learner_gpt.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            warm, fresh = [], []
            for rep in range(max(args.reps, args.fresh_reps)):
                if rep < args.fresh_reps:
                    seconds, what = time_fresh(path, scenario, 1000 + rep, env, args.fresh_timeout)
                    fresh.append(seconds)
                    print(f"  {scenario:8s} fresh #{rep + 1}: {seconds:7.2f} s  {what}", flush=True)
                if rep < args.reps:
                    seconds, what = time_warm(runner, path, scenario, rep)
                    warm.append(seconds)
                    print(f"  {scenario:8s} warm  #{rep + 1}: {seconds:7.2f} s  {what}", flush=True)
            figures[scenario] = {"warm": warm, "fresh": fresh}
    finally:
        runner.close()

    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load_before:.1f} before, {load_after:.1f} after\n")
    print(f"{'scenario':10s} {'way':48s} {'n':>3s} {'p50 s':>8s} {'p90 s':>8s}")
    summary = {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after, "scenarios": {}}
    for scenario, f in figures.items():
        label = {"skeleton": "check → next TODO", "complete": "check: all components + 1 optimizer step"}[scenario]
        rows = [("warm worker: " + label, f["warm"]), ("fresh base_train process (--num_iterations=1)", f["fresh"])]
        entry = {}
        for way, values in rows:
            if values:
                p50, p90 = statistics.median(values), percentile(values, 90)
                print(f"{scenario:10s} {way:48s} {len(values):3d} {p50:8.2f} {p90:8.2f}")
                entry["warm" if way.startswith("warm") else "fresh"] = {"n": len(values), "p50_s": p50, "p90_s": p90,
                                                                         "all_s": values}
        if f["warm"] and f["fresh"]:
            ratio = statistics.median(f["fresh"]) / statistics.median(f["warm"])
            entry["speedup_p50"] = ratio
            print(f"{'':10s} → the warm worker is {ratio:.1f}× faster at the median")
        summary["scenarios"][scenario] = entry
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

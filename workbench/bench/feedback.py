"""Benchmark: how long from saving the learner's file to feedback, warm worker vs a fresh training process.

    python -m workbench.bench.feedback [--reps 10] [--fresh-reps 3] [--scenarios skeleton,complete]
                                       [--child fork,spawn] [--think 3]

For each scenario the learner file is (re)written and the clock runs until the result is in:
- warm: the check through workbench.check.client's warm worker (what the TUI does on every save), once per
  child strategy (--child: a child forked per check, or a warm spawned spare, workbench/check/spare.py), with
  --think seconds between saves (a learner edits between saves; the next spare warms meanwhile);
- fresh: the old way, a new `python -m nanochat.scripts.base_train --depth=4 --max_seq_len=512
  --device_batch_size=1 --total_batch_size=512 --num_iterations=1 --model FILE` process, until it exits.
The two alternate within one run, so both see the same machine load. Scenarios: `skeleton` (the untouched
template: the answer is the next TODO) and `complete` (the reference written out as the learner's file: every
check plus one optimizer step). Prints p50/p90 of each, the ratio of the p50s, and for the two child strategies
the difference of their p50s and the median of the differences of each alternating pair (fairer while other
work shares the machine). A spawn run says when it waited for its spare or found it still warming up
(timings.spare_wait_s, timings.spare_hot). Everything runs in a temporary
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

from workbench.check.spare import STRATEGIES

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
    timings = result.get("timings", {})
    wait, hot = timings.get("spare_wait_s"), timings.get("spare_hot")
    spare = (f" (waited {wait:.2f} s for the spare)" if wait and wait >= 0.01 else "") + (
        " (the spare had not finished warming up)" if hot is False else "")
    if scenario == "skeleton":
        todo = (result.get("next_todo") or {}).get("qualname")
        ok = todo == "GPT.__init__"
        what = f"next TODO {todo}"
    else:
        ok = result.get("ok") is True
        what = "all components pass" if ok else f"NOT ok: {result.get('lead') or result.get('error')}"
    return seconds, ("" if ok else "unexpected: ") + what + spare


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


def parse_args(argv):
    parser = argparse.ArgumentParser(description="time save-to-feedback: warm worker vs a fresh base_train process")
    parser.add_argument("--reps", type=int, default=10, help="warm runs per scenario and strategy (default 10)")
    parser.add_argument("--fresh-reps", type=int, default=3, help="fresh-process runs per scenario (default 3)")
    parser.add_argument("--scenarios", default="skeleton,complete", help="comma-separated: skeleton, complete")
    parser.add_argument("--child", default=None, help="comma-separated child strategies: fork, spawn (default: both "
                                                      "where fork exists, else spawn)")
    parser.add_argument("--think", type=float, default=3.0, help="seconds between warm saves (default 3)")
    parser.add_argument("--fresh-timeout", type=float, default=900, help="seconds allowed per fresh process")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.scenarios:
        if s not in ("skeleton", "complete"):
            parser.error(f"unknown scenario {s!r}: choose skeleton or complete")
    default = "fork,spawn" if hasattr(os, "fork") else "spawn"
    args.child = [c.strip() for c in (args.child or default).split(",") if c.strip()]
    for c in args.child:
        if c not in STRATEGIES:
            parser.error(f"unknown child strategy {c!r}: choose {' or '.join(STRATEGIES)}")
    if args.reps < 1 or args.fresh_reps < 0 or args.think < 0:
        parser.error("--reps must be at least 1, --fresh-reps and --think at least 0")
    return args


def measure(args, work: pathlib.Path, env: dict) -> dict:
    """{scenario: {"fresh": [s...], "warm fork": [s...], "warm spawn": [...]}}, runs alternating."""
    from workbench.check.client import Runner

    runners = {}
    try:
        for child in args.child:
            t0 = time.perf_counter()
            runners[child] = Runner(timeout=600, child=child)
            info = runners[child].wait_ready()
            print(f"warm worker ({child}) ready in {time.perf_counter() - t0:.1f} s (the first start trains the "
                  f"embedded tokenizer; reference precompute {info.get('reference_s')} s) — not counted below")
        print()
        figures = {}
        for scenario in args.scenarios:
            path = work / f"{scenario}" / "learner_gpt.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            runs = figures[scenario] = {"fresh": [], **{f"warm {c}": [] for c in runners}}
            for rep in range(max(args.reps, args.fresh_reps)):
                if rep < args.fresh_reps:
                    seconds, what = time_fresh(path, scenario, 1000 + rep, env, args.fresh_timeout)
                    runs["fresh"].append(seconds)
                    print(f"  {scenario:8s} fresh      #{rep + 1}: {seconds:7.2f} s  {what}", flush=True)
                for child, runner in runners.items():
                    if rep >= args.reps:
                        break
                    time.sleep(args.think)
                    seconds, what = time_warm(runner, path, scenario, rep)
                    runs[f"warm {child}"].append(seconds)
                    print(f"  {scenario:8s} warm {child:5s} #{rep + 1}: {seconds:7.2f} s  {what}", flush=True)
        return figures
    finally:
        for runner in runners.values():
            runner.close()


def summarise(figures: dict) -> dict:
    print(f"{'scenario':10s} {'way':56s} {'n':>3s} {'p50 s':>8s} {'p90 s':>8s}")
    summary = {}
    for scenario, runs in figures.items():
        label = {"skeleton": "check → next TODO", "complete": "check: all components + 1 optimizer step"}[scenario]
        entry = summary[scenario] = {}
        for way, values in runs.items():
            if not values:
                continue
            p50, p90 = statistics.median(values), percentile(values, 90)
            title = "fresh base_train process (--num_iterations=1)" if way == "fresh" else f"{way}: {label}"
            print(f"{scenario:10s} {title:56s} {len(values):3d} {p50:8.2f} {p90:8.2f}")
            entry[way] = {"n": len(values), "p50_s": p50, "p90_s": p90, "all_s": values}
        warm = {way: e["p50_s"] for way, e in entry.items() if way.startswith("warm")}
        if "fresh" in entry:
            for way, p50 in warm.items():
                entry[f"speedup_p50 {way}"] = entry["fresh"]["p50_s"] / p50
                print(f"{'':10s} → {way} is {entry['fresh']['p50_s'] / p50:.1f}× faster than fresh at the median")
        if len(warm) == 2:
            entry["spawn_minus_fork_p50_s"] = warm["warm spawn"] - warm["warm fork"]
            # the runs alternate, so each pair saw about the same machine load: their differences are the fairer
            # comparison on a busy machine
            paired = [s - f for f, s in zip(runs["warm fork"], runs["warm spawn"])]
            entry["spawn_minus_fork_paired_median_s"] = statistics.median(paired)
            print(f"{'':10s} → spawn (warm spare) p50 − fork p50 = {entry['spawn_minus_fork_p50_s']:+.2f} s; "
                  f"median of the paired differences {entry['spawn_minus_fork_paired_median_s']:+.2f} s")
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(work / "base"), PYTHONPATH=str(ROOT))
    os.environ["NANOCHAT_BASE_DIR"] = env["NANOCHAT_BASE_DIR"]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, {sys.platform}, load average {load_before:.1f} before the run; "
          f"python {sys.version.split()[0]}")
    figures = measure(args, work, env)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load_before:.1f} before, {load_after:.1f} after\n")
    summary = {"cpus": os.cpu_count(), "platform": sys.platform, "load_before": load_before,
               "load_after": load_after, "think_s": args.think, "scenarios": summarise(figures)}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

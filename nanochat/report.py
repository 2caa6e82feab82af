"""The report card of a pipeline run: what ran, on what, for how long, and how good each model came out.

Every stage adds its section to `$NANOCHAT_BASE_DIR/report/` as it finishes (`log_section`: a JSON file per
stage, replaced if the stage runs again), and speedrun.sh records each stage's wall-clock time
(`python -m nanochat.report time STAGE SECONDS`). `python -m nanochat.report` then writes `report.md`:

- the environment: commit, Python, torch, the device (GPU name and count, or CPU cores), memory;
- time per stage, the total, and an estimated cost (GPU-hours x an hourly price; `--gpu-hourly-usd`);
- the tokenizer: vocabulary, what it was trained on, bytes per token on held-out text;
- one section per stage, in pipeline order (config, time, tokens, throughput, MFU on GPU, its metrics);
- the summary table nanochat prints: CORE, ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval, SpellingBee and
  ChatCORE against the BASE, MID, SFT and RL models, read from the results base_eval (`core_eval_<step>.json`)
  and chat_eval (`chat_eval_<step>.json`) save beside each checkpoint; tasks that were skipped (no data) are
  listed with the reason.

    python -m nanochat.report reset          # start a new run's report (keeps nothing of the last)
    python -m nanochat.report time base 812  # speedrun.sh: stage 'base' took 812 s
    python -m nanochat.report                # write report.md and print where it is
"""

import argparse
import datetime
import glob
import json
import os
import platform
import subprocess
import sys

from nanochat.fsutil import atomic_write
from nanochat.presets import STAGES

REPORT_DIR = "report"
HEADER_FILE = "header.json"
TIMINGS_FILE = "timings.json"
REPORT_FILE = "report.md"
PHASES = ("base", "mid", "sft", "rl")
SUMMARY_METRICS = ("CORE", "ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee", "ChatCORE")
EVAL_KINDS = ("core_eval", "chat_eval")  # result files the eval scripts write beside a checkpoint: <kind>_<step>.json
DEFAULT_GPU_HOURLY_USD = 3.0  # roughly an on-demand H100 hour in 2025


def report_dir() -> str:
    from nanochat.common import get_base_dir

    return os.path.join(get_base_dir(), REPORT_DIR)


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")


def _read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------------------
# writing: what stages and speedrun.sh call

def log_section(stage: str, title: str, items: dict) -> str:
    """Record `stage`'s section (a flat dict of numbers/strings; a nested dict is shown as one line). Rank 0 only."""
    if int(os.environ.get("RANK", 0)) != 0:
        return ""
    if stage not in STAGES:
        raise ValueError(f"unknown report stage {stage!r}; stages are {', '.join(STAGES)}")
    path = os.path.join(report_dir(), f"{stage}.json")
    _write_json(path, {"stage": stage, "title": title, "written_at": _now(), "items": items})
    return path


def record_time(stage: str, seconds: float) -> None:
    path = os.path.join(report_dir(), TIMINGS_FILE)
    timings = _read_json(path, {})
    timings[stage] = round(float(seconds), 1)
    _write_json(path, timings)


def reset() -> None:
    """Start a fresh report: remove the last run's sections and timings, write the header."""
    directory = report_dir()
    for path in glob.glob(os.path.join(directory, "*.json")) + [os.path.join(directory, REPORT_FILE)]:
        if os.path.exists(path):
            os.remove(path)
    _write_json(os.path.join(directory, HEADER_FILE), {"started_at": _now(), "environment": environment()})


# ---------------------------------------------------------------------------------------------------------------
# gathering

def _git(*args):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict:
    """Commit, software and hardware of this machine."""
    import torch

    env = {
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "cpu_cores": os.cpu_count(),
        "gpu": None,
        "gpu_count": 0,
    }
    try:
        env["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        env["memory_gib"] = None
    if torch.cuda.is_available():
        env["gpu_count"] = torch.cuda.device_count()
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
    return env


def tokenizer_stats() -> dict:
    """Vocabulary and training metadata of the tokenizer in use, and its bytes per token on held-out text."""
    from nanochat.scripts.tok_eval import held_out_texts
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    stats = {"vocab_size": tokenizer.get_vocab_size(), "special_tokens": len(tokenizer.get_special_tokens())}
    stats.update({k: v for k, v in tokenizer.metadata.items() if isinstance(v, (int, float, str))})
    try:
        description, texts = held_out_texts(None, 200_000)
    except Exception as e:  # no held-out text is a gap in the report, not a reason to fail it
        stats["bytes_per_token"] = f"not measured ({e})"
        return stats
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in tokenizer.encode(texts))
    stats["bytes_per_token"] = round(n_bytes / max(n_tokens, 1), 3)
    stats["measured_on"] = f"{n_bytes:,} bytes of {description}"
    return stats


def _step_of(path):
    digits = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".json")
    return int(digits) if digits.isdigit() else -1


def eval_files(phase) -> list[str]:
    """The evaluation results to read for a phase: in the tag directory with the newest result, the latest
    step's core_eval (CORE, base only) and chat_eval (task accuracies, ChatCORE) files."""
    from nanochat.checkpoint_manager import checkpoints_dir

    files = glob.glob(os.path.join(checkpoints_dir(phase), "*", "*_eval_*.json"))
    if not files:
        return []
    tag_dir = os.path.dirname(max(files, key=os.path.getmtime))
    chosen = []
    for kind in EVAL_KINDS:
        candidates = glob.glob(os.path.join(tag_dir, f"{kind}_*.json"))
        if candidates:
            chosen.append(max(candidates, key=_step_of))
    return chosen


def eval_results(phase) -> tuple[dict, dict]:
    """({metric: value}, {task: why it was skipped}) of the phase's latest evaluations."""
    results, skipped = {}, {}
    for path in eval_files(phase):
        data = _read_json(path, {})
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("results"), dict):
            results.update({k: v for k, v in data["results"].items() if isinstance(v, (int, float))})
        if isinstance(data.get("skipped"), dict):
            skipped.update(data["skipped"])
        for key in ("CORE", "ChatCORE"):
            if isinstance(data.get(key), (int, float)):
                results[key] = data[key]
    return results, skipped


def metrics_summary(phase) -> dict:
    """A training phase's figures from its newest metrics.jsonl (for a stage that logged no section of its own):
    steps, tokens, training time, mean tok/s and MFU without the first step (warm-up, compilation), val bpb."""
    from nanochat.checkpoint_manager import checkpoints_dir

    paths = glob.glob(os.path.join(checkpoints_dir(phase), "*", "metrics.jsonl"))
    if not paths:
        return {}
    path = max(paths, key=os.path.getmtime)
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    steps = [r for r in records if isinstance(r, dict) and "loss" in r]
    if not steps:
        return {}
    timed = steps[1:] or steps
    last_step = steps[-1].get("step")  # records are written every --log_every steps: count by the step number
    count = last_step + 1 if isinstance(last_step, int) else len(steps)
    summary = {"metrics": path, "steps": count, "final loss": steps[-1]["loss"],
               "training time s": steps[-1].get("elapsed_s")}
    if "total_tokens" in steps[-1]:
        summary["tokens"] = steps[-1]["total_tokens"]
    for key in ("tok_per_sec", "mfu"):
        values = [r[key] for r in timed if isinstance(r.get(key), (int, float))]
        if values:
            summary[f"mean {key} (after step 0)"] = sum(values) / len(values)
    bpb = [r["val_bpb"] for r in records if isinstance(r, dict) and isinstance(r.get("val_bpb"), (int, float))]
    if bpb:
        summary["last val bpb"], summary["min val bpb"] = bpb[-1], min(bpb)
    return summary


def summary_table() -> dict:
    """{metric: {phase: value or None}} for SUMMARY_METRICS x PHASES."""
    per_phase = {phase: eval_results(phase)[0] for phase in PHASES}
    return {metric: {phase: per_phase[phase].get(metric) for phase in PHASES} for metric in SUMMARY_METRICS}


# ---------------------------------------------------------------------------------------------------------------
# rendering

def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _bullets(items: dict) -> list[str]:
    return [f"- {key}: {_fmt(value)}" for key, value in items.items()]


def format_seconds(seconds) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def time_and_cost(timings: dict, env: dict, started_at, gpu_hourly_usd: float) -> list[str]:
    lines = []
    if timings:
        lines += ["| stage | time |", "|---|---|"]
        lines += [f"| {stage} | {format_seconds(s)} |" for stage, s in timings.items()]
        total = sum(timings.values())
        lines += [f"| **total** | **{format_seconds(total)}** |", ""]
    elif started_at:
        started = datetime.datetime.fromisoformat(started_at)
        total = (datetime.datetime.now().astimezone() - started).total_seconds()
        lines.append(f"- total time since `report reset`: {format_seconds(total)}")
    else:
        return ["- no stage times recorded"]
    gpus = env.get("gpu_count") or 0
    if gpus:
        cost = total / 3600 * gpus * gpu_hourly_usd
        lines.append(f"- estimated cost: ${cost:,.2f} ({gpus} x {env.get('gpu')} for {total / 3600:.2f} h "
                     f"at ${gpu_hourly_usd:.2f} per GPU-hour)")
    else:
        lines.append("- estimated cost: no GPU was used (a CPU run rents nothing)")
    return lines


def summary_markdown(table: dict) -> list[str]:
    lines = ["| Metric | BASE | MID | SFT | RL |", "|---|---|---|---|---|"]
    for metric, row in table.items():
        lines.append(f"| {metric} | " + " | ".join(_fmt(row[p]) for p in PHASES) + " |")
    return lines


def render(gpu_hourly_usd: float = DEFAULT_GPU_HOURLY_USD) -> str:
    directory = report_dir()
    header = _read_json(os.path.join(directory, HEADER_FILE), {})
    env = header.get("environment") or environment()
    timings = _read_json(os.path.join(directory, TIMINGS_FILE), {})
    lines = ["# nanochat report card", "", f"Generated {_now()}" +
             (f"; run started {header['started_at']}" if header.get("started_at") else ""), ""]
    lines += ["## Environment", ""] + _bullets(env) + [""]
    lines += ["## Time and cost", ""] + time_and_cost(timings, env, header.get("started_at"), gpu_hourly_usd) + [""]
    lines += ["## Tokenizer", ""] + _bullets(tokenizer_stats()) + [""]
    for stage in STAGES:
        section = _read_json(os.path.join(directory, f"{stage}.json"))
        if isinstance(section, dict) and isinstance(section.get("items"), dict):
            lines += [f"## {section.get('title', stage)}", "", f"- written: {section.get('written_at', '?')}"]
            lines += _bullets(section["items"]) + [""]
        elif stage in PHASES and (figures := metrics_summary(stage)):
            lines += [f"## {stage} training (from its metrics.jsonl)", ""] + _bullets(figures) + [""]
    lines += ["## Summary", ""] + summary_markdown(summary_table()) + [""]
    for phase in PHASES:
        for reason in eval_results(phase)[1].values():
            lines.append(f"- {phase}: not evaluated: {reason}")
    lines.append("")
    return "\n".join(lines)


def write_report(gpu_hourly_usd: float = DEFAULT_GPU_HOURLY_USD) -> str:
    path = os.path.join(report_dir(), REPORT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, render(gpu_hourly_usd))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m nanochat.report", description="The report card of a pipeline run.")
    p.add_argument("command", nargs="?", default="generate", choices=["generate", "reset", "time"],
                   help="generate report.md (default), reset for a new run, or record a stage's time")
    p.add_argument("stage", nargs="?", help="time: the stage")
    p.add_argument("seconds", nargs="?", type=float, help="time: its wall-clock seconds")
    p.add_argument("--gpu-hourly-usd", type=float, default=DEFAULT_GPU_HOURLY_USD,
                   help="price of one GPU-hour for the cost estimate (default: %(default)s)")
    args = p.parse_args(argv)
    if args.command == "time":
        if args.stage not in STAGES or args.seconds is None or args.seconds < 0:
            p.error(f"usage: time STAGE SECONDS, STAGE one of {', '.join(STAGES)}")
        record_time(args.stage, args.seconds)
    elif args.command == "reset":
        reset()
        print(f"report: new run started in {report_dir()}")
    else:
        path = write_report(args.gpu_hourly_usd)
        print("\n".join(summary_markdown(summary_table())))
        print(f"report written to {path}")


if __name__ == "__main__":
    sys.exit(main())

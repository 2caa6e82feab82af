"""`nanochat-workbench launch --target NAME --stage base --preset d12 [--model FILE] [--wait] [-- ARGS]`: the
readiness gate, then the run on the target (service.launch); with --wait, follow it and pull the results back.

Exit codes: 0 submitted (with --wait: finished and pulled back), 1 refused by the gate, failed or cancelled,
2 a usage error.
"""

import argparse
import asyncio
import sys
from pathlib import Path

from nanochat.common import positive_int
from nanochat.presets import PRESETS, PresetError
from workbench.remote import monitor
from workbench.remote.records import RunRecord, RunState
from workbench.remote.service import LAUNCH_CHOICES, launch, plan_launch, job_script
from workbench.remote.ssh import RemoteError
from workbench.remote.targets import Target, TargetError, get_target

PROG = "nanochat-workbench launch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, metavar="NAME", help="a target from targets.toml")
    parser.add_argument("--stage", choices=LAUNCH_CHOICES, default="base",
                        help="base (data, tokenizer, pretraining), mid, sft, rl, eval or all (default base)")
    parser.add_argument("--preset", choices=list(PRESETS), default="cpu", help="run size (default cpu)")
    parser.add_argument("--model", metavar="FILE", help="your GPT file (default: the reference nanochat/gpt.py)")
    parser.add_argument("--depth", type=positive_int, help="model depth (overrides the preset)")
    parser.add_argument("--dry-run", action="store_true", help="run the gate and print the job script; submit nothing")
    parser.add_argument("--wait", action="store_true", help="follow the run and pull the results back at the end")
    parser.add_argument("--force", action="store_true", help="launch even when the readiness gate fails")
    parser.add_argument("--no-checks", action="store_true",
                        help="skip the learner checks of the gate (the memory/time estimate still runs)")
    parser.add_argument("script_args", nargs="*", metavar="-- ARGS",
                        help="extra arguments for the main stage's script, after --, e.g. -- --num_iterations=20")


def _usage(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _model_path(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"--model {text}: no such file")
    if path.suffix != ".py":
        raise ValueError(f"--model {text}: not a .py file")
    return path


def _apply_batch(plan, batch: int | None, user_args: list[str]) -> None:
    """Use the gate's device batch for the base stage, unless the arguments after -- choose one."""
    if not batch or any(a.startswith("--device_batch_size") for a in user_args):
        return
    for stage in plan.stages:
        if stage.stage == "base":
            stage.args.append(f"--device_batch_size={batch}")


def _format_metrics(m: dict) -> str | None:
    if m.get("loss") is not None:
        parts = [f"step {m.get('step')}", f"loss {m['loss']:.4f}"]
        if m.get("tok_per_sec"):
            parts.append(f"{m['tok_per_sec']:,.0f} tok/s")
        if m.get("mfu") is not None:
            parts.append(f"MFU {m['mfu']:.1%}")
        if m.get("eta_s") is not None:
            parts.append(f"ETA {m['eta_s']:.0f}s")
        return " | ".join(parts)
    if m.get("val_bpb") is not None:
        return f"step {m.get('step')} | val bpb {m['val_bpb']:.4f}"
    return None


class _Printer:
    """on_update for monitor.wait: state changes and metrics lines, on stderr."""

    def __init__(self):
        self.seen = None

    def __call__(self, record: RunRecord, metrics: list[dict]) -> None:
        if (record.state, record.stage, record.queue_reason) != self.seen:
            self.seen = (record.state, record.stage, record.queue_reason)
            detail = (f"SLURM: {record.queue_reason}" if record.state is RunState.QUEUED and record.queue_reason
                      else f"stage {record.stage}" if record.stage else "")
            print(f"[{record.id}] {record.state.value}" + (f" ({detail})" if detail else ""), file=sys.stderr,
                  flush=True)
        for m in metrics:
            line = _format_metrics(m)
            if line:
                print(f"  {line}", file=sys.stderr, flush=True)


async def follow(target: Target, record: RunRecord, interval: float = 3.0) -> RunRecord:
    """Wait for the end, then pull the results back (when it produced any)."""
    record = await monitor.wait(target, record, _Printer(), interval=interval)
    record = await monitor.pull_results(target, record, progress=lambda m: print(m, file=sys.stderr, flush=True))
    return record


def report_end(record: RunRecord) -> int:
    took = f" in {record.ended - record.started:.0f} s" if record.ended else ""
    if record.state is RunState.DONE:
        print(f"run {record.id} done{took}; results in: {', '.join(record.pulled) or '(nothing written)'}")
        return 0
    print(f"run {record.id} {record.state.value}{took}: {record.message or ''}".rstrip(": "), file=sys.stderr)
    return 1


def run(args) -> int:
    try:
        target = get_target(args.target)
        model = _model_path(args.model)
        plan = plan_launch(target, stage=args.stage, preset=args.preset, model=model, depth=args.depth,
                           extra_args=tuple(args.script_args))
    except (TargetError, PresetError, ValueError) as e:
        return _usage(str(e))
    from workbench.remote.gate import format_report, run_gate  # imports torch
    report = run_gate(plan, skip_checks=args.no_checks)
    print(format_report(report, plan), file=sys.stderr)
    if not report.passed:
        failed = ", ".join(i.name for i in report.items if i.status.value == "fail")
        if not args.force:
            print(f"{PROG}: refused: the readiness gate failed ({failed}); fix it, or pass --force to launch anyway",
                  file=sys.stderr)
            return 1
        print(f"--force: launching although the gate failed ({failed})", file=sys.stderr)
    _apply_batch(plan, report.device_batch_size, args.script_args)
    if args.dry_run:
        print(job_script(plan), end="")
        return 0
    try:
        record = asyncio.run(launch(plan, progress=lambda m: print(m, file=sys.stderr, flush=True)))
        if not args.wait:
            print(f"{record.id}\nfollow it: nanochat-workbench runs --wait {record.id}; "
                  f"cancel: nanochat-workbench runs --cancel {record.id}")
            return 0
        record = asyncio.run(follow(target, record))
    except RemoteError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nstopped following; the run goes on on {target.name}: nanochat-workbench runs", file=sys.stderr)
        return 130
    return report_end(record)

"""`nanochat-workbench check FILE`: run the learner's GPT through the depth-4 checks and report.

A file of another track (learner_muon.py, learner_dataloader.py, ...: recognised by workbench/tracks/recognise.py
from its header, name or definitions) is checked by the track runner (workbench/tracks/runner.py) instead; the
report and `--json` read the same result dict.

    nanochat-workbench check learner_gpt.py            a readable report: next TODO, components, shapes, losses
    nanochat-workbench check learner_gpt.py --json     one JSON object (the same dict the TUI gets)
    nanochat-workbench check learner_gpt.py --experiment MLP.forward    a method that differs on purpose

Exit code 0 when everything passes (methods marked as experiments may differ), 1 when not (a TODO, a mismatch,
an error), 2 for usage errors. The checks run in a separate worker process (workbench/check/client.py); this
process never imports the learner's file.
"""

import argparse
import json
import os
import sys

from nanochat.common import positive_float, positive_int
from workbench.check.client import DEFAULT_SEQ, DEFAULT_TIMEOUT, RunnerError, check_file
from workbench.check.result import failed_result
from workbench.check.spare import CHILD_ENV, STRATEGIES, choose_strategy, platform_default
from workbench.tracks.recognise import recognise
from workbench.course.phases import ALL_METHODS

CLI_STEPS = 10  # one-shot runs can afford a few more steps than the TUI's warm path


def _seq(text: str) -> int:
    value = positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32 (the checks generate from a 16-token prompt), got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="your GPT file, e.g. learner_gpt.py")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument("--steps", type=positive_int, default=CLI_STEPS,
                        help=f"optimizer steps on one batch, loss measured before and after each (default {CLI_STEPS})")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds before your code is stopped (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--seq", type=_seq, default=DEFAULT_SEQ, metavar="T",
                        help=f"sequence length of the batch (default {DEFAULT_SEQ})")
    parser.add_argument("--memory", type=positive_float, default=None, metavar="GB",
                        help="memory your code may allocate before it is stopped (default: half the RAM)")
    parser.add_argument("--experiment", action="append", default=[], metavar="QUALNAME",
                        help="check this method as an experiment (repeatable; like a '# workbench: experiment' "
                             "comment in it): differing from the reference is not a failure, and your model and "
                             "the reference are trained side by side")
    parser.add_argument("--child", choices=STRATEGIES, default=None,
                        help=f"how each check's process starts: fork it from the warm worker, or hand it to a warm "
                             f"spawned spare (default: ${CHILD_ENV}, else {platform_default()} here)")


def usage_error(message: str) -> int:
    print(f"nanochat-workbench check: error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    path = os.path.abspath(os.path.expanduser(args.file))
    if not os.path.exists(path):
        return usage_error(f"{args.file} does not exist (create a workspace with `nanochat-workbench init DIR`)")
    if os.path.isdir(path):
        return usage_error(f"{args.file} is a directory; pass your GPT file, e.g. {os.path.join(args.file, 'learner_gpt.py')}")
    if not path.endswith(".py"):
        return usage_error(f"{args.file} is not a .py file")
    try:
        recognised = recognise(path)
    except OSError as e:
        return usage_error(f"cannot read {args.file}: {e.strerror or e}")
    track_file = recognised.track_file
    if track_file is not None and args.experiment:
        return usage_error(f"--experiment is for the GPT file's methods; {args.file} is a file of the "
                           f"{recognised.track} track")
    if track_file is not None:
        return run_track(args, path)
    unknown = [q for q in args.experiment if q not in ALL_METHODS]
    if unknown:
        return usage_error(f"--experiment {unknown[0]}: not a method of the GPT file "
                           f"(one of: {', '.join(ALL_METHODS)})")
    try:
        child = choose_strategy(args.child)
    except ValueError as e:
        return usage_error(f"${CHILD_ENV}: {e}")
    status = spinner(args, "starting the checker (torch, tokenizer, reference model)…")
    try:
        result = check_file(path, steps=args.steps, timeout=args.timeout, seq_len=args.seq, memory_gb=args.memory,
                            child=child, experiments=args.experiment)
    except RunnerError as e:
        if status:
            status.stop()
        if args.json:
            print(json.dumps(failed_result(path, str(e))))
        else:
            print(f"nanochat-workbench check: the checker could not run: {e}", file=sys.stderr)
        return 1
    finally:
        if status:
            status.stop()
    return print_result(args, result)


def run_track(args, path: str) -> int:
    """A track file (optimizer, data, training, engine): its check in a child process, the same report or JSON."""
    from workbench.tracks.runner import check_track_file
    status = spinner(args, "checking (torch and the reference module load first)…")
    try:
        result = check_track_file(path, timeout=args.timeout)
    finally:
        if status:
            status.stop()
    return print_result(args, result)


def spinner(args, text: str):
    """A started rich status line on stderr while the check runs (None for --json or when stderr is no terminal)."""
    if args.json or not sys.stderr.isatty():
        return None
    from rich.console import Console
    status = Console(stderr=True).status(text)
    status.start()
    return status


def print_result(args, result) -> int:
    """The JSON or the readable report; the exit code (0 when everything passes)."""
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        from workbench.check.report import print_report
        print_report(result)
    return 0 if result.get("ok") else 1

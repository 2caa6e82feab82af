"""`nanochat-workbench milestone overfit|tokenizer|optimizer`: measure a milestone with numbers, date it in STATUS.md.

    nanochat-workbench milestone overfit [learner_gpt.py]           your GPT memorises 64 sentences: loss < 0.1?
    nanochat-workbench milestone tokenizer my_bpe.py                your BPE trainer: >= 4 characters per token?
    nanochat-workbench milestone optimizer learner_muon.py          your optimizer: the reference's loss curve?

Each prints its progress, then the measurement, and writes it as a line of the STATUS.md milestones section
(workbench/status/milestones.py; the STATUS.md beside the learner's file unless --status names one, none with
--no-status). The learner's code runs in a process of its own (workbench/instruments/isolate.py for the GPT and
the optimizer, workbench/course/bpe_check.py's child for the tokenizer); a TODO or a crash in it is reported in one
line as theirs. Exit codes: 0 reached, 1 not yet (or the learner's code failed), 2 a usage error.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from nanochat.common import positive_float, positive_int
from workbench.instruments.command import model_file, usage_error
from workbench.status.milestones import (OVERFIT_LOSS, TOKENIZER_CHARS_PER_TOKEN, Measurement, Milestone, record,
                                         recorded_line)

COMMAND = "milestone"
JOBS = "workbench.status.milestone_jobs"
TOKENIZER_VOCAB = 16384  # 256 bytes + 16,128 merges: rustbpe reaches ~4.2 characters per token at 1 M characters
TOKENIZER_CHARS = 1_000_000
OPTIMIZER_TOLERANCE = 0.02  # the largest |learner loss - reference loss| over the steps, in nats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="milestone", metavar="MILESTONE", required=True)
    p = sub.add_parser("overfit", help=f"train your GPT on a fixed set of sentences until loss < {OVERFIT_LOSS:g}")
    p.add_argument("file", nargs="?", default=None, metavar="FILE",
                   help="your GPT file (default: the workspace's learner_gpt.py in the current directory)")
    p.add_argument("--model", default=None, metavar="FILE", help="the same as FILE")
    p.add_argument("--sentences", type=positive_int, default=64, help="how many sentences (default 64)")
    p.add_argument("--max-steps", type=positive_int, default=300, help="give up after this many steps (default 300)")
    _common(p, timeout=1800.0)
    p = sub.add_parser("tokenizer", help=f"your BPE trainer: ≥ {TOKENIZER_CHARS_PER_TOKEN:g} characters per token "
                                         f"on held-out text")
    p.add_argument("file", metavar="FILE", help="a .py file that defines train_bpe(text, vocab_size, pattern)")
    p.add_argument("--vocab-size", type=positive_int, default=TOKENIZER_VOCAB,
                   help=f"256 byte tokens + the merges to learn (default {TOKENIZER_VOCAB})")
    p.add_argument("--chars", type=positive_int, default=TOKENIZER_CHARS,
                   help=f"characters of the embedded corpus's train split to train on (default {TOKENIZER_CHARS:,})")
    _common(p, timeout=900.0)
    p = sub.add_parser("optimizer", help="train the reference GPT with your optimizer and with the reference's")
    p.add_argument("file", metavar="FILE", help="your copy of nanochat/muon.py or nanochat/adamw.py")
    p.add_argument("--steps", type=positive_int, default=30, help="training steps of each run (default 30)")
    p.add_argument("--tolerance", type=positive_float, default=OPTIMIZER_TOLERANCE,
                   help=f"the largest loss difference allowed at any step (default {OPTIMIZER_TOLERANCE:g})")
    p.add_argument("--seq", type=positive_int, default=256, help="tokens per row (default 256)")
    _common(p, timeout=1800.0)


def _common(parser: argparse.ArgumentParser, timeout: float) -> None:
    parser.add_argument("--depth", type=positive_int, default=4, help="blocks of the GPT (default 4)")
    parser.add_argument("--timeout", type=positive_float, default=timeout, metavar="S",
                        help=f"seconds before your code is stopped (default {timeout:g})")
    parser.add_argument("--memory", type=positive_float, default=None, metavar="GB",
                        help="memory your code may allocate (default: half the RAM)")
    parser.add_argument("--status", default=None, metavar="PATH",
                        help="the STATUS.md to write (default: the one beside FILE)")
    parser.add_argument("--no-status", action="store_true", help="do not write STATUS.md")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the measurement) at the end")


class MilestoneUsage(Exception):
    """The command was asked for something it cannot do; the message says what (exit 2)."""


def run(args) -> int:
    measure = {"overfit": measure_overfit, "tokenizer": measure_tokenizer, "optimizer": measure_optimizer}
    if args.milestone == "overfit" and args.model and args.file:
        return usage_error(COMMAND, "give your GPT file once: FILE or --model FILE")
    path_text = (args.model or args.file) if args.milestone == "overfit" else args.file
    if path_text is None:
        from workbench.course.workspace import learner_file_in
        path_text = str(learner_file_in(Path.cwd()))
    path, problem = model_file(path_text)
    if problem or path is None:
        return usage_error(COMMAND, problem or "name your file, not the reference")
    problem = wrong_track(args.milestone, path)
    if problem:
        return usage_error(COMMAND, problem)
    try:
        measurement = measure[args.milestone](args, path)
    except MilestoneUsage as e:
        return usage_error(COMMAND, str(e))
    if measurement is None:
        return 1
    status = None if args.no_status else Path(args.status) if args.status else Path(path).parent / "STATUS.md"
    written = record(status, measurement) if status is not None else None
    if args.json:
        print(json.dumps({"milestone": measurement.milestone.value, "reached": measurement.reached,
                          "detail": measurement.detail, "when": measurement.when.isoformat(timespec="seconds"),
                          "status_problem": written}))
    else:
        print(("✔ reached: " if measurement.reached else "✘ not yet: ") + measurement.detail)
        if written:
            print(f"STATUS.md not updated: {written}", file=sys.stderr)
        elif status is not None:
            print(f"{status}: {recorded_line(status, measurement.milestone)}")
    return 0 if measurement.reached else 1


def wrong_track(milestone: str, path: str) -> str | None:
    """Why the file cannot be measured for this milestone (it belongs to another track), or None. The tokenizer's
    file is any file defining train_bpe, so only the overfit and optimizer milestones are asked."""
    from workbench.tracks.base import Track
    from workbench.tracks.recognise import recognise
    try:
        found = recognise(path)
    except OSError as e:
        return f"cannot read {os.path.basename(path)}: {e.strerror or e}"
    name = os.path.basename(path)
    if milestone == "overfit" and found.track is not Track.MODEL:
        return f"{name} is a file of the {found.track} track; the overfit milestone trains your GPT (learner_gpt.py)"
    if milestone == "optimizer" and found.track is not Track.OPTIMIZER and found.how != "default":
        what = "your GPT file" if found.track is Track.MODEL else f"a file of the {found.track} track"
        return f"{name} is {what}; the optimizer milestone needs your learner_muon.py or learner_adamw.py"
    return None


# ---------------------------------------------------------------------------------------------------------------
# the three measurements (the learner's code runs in a child process)


def measure_overfit(args, path: str) -> Measurement | None:
    request = {"milestone": "overfit", "file": path, "depth": args.depth, "sentences": args.sentences,
               "max_steps": args.max_steps, "target": OVERFIT_LOSS, "every": 10, "seed": 0}
    print(f"overfit: {os.path.basename(path)} (depth {args.depth}) on {args.sentences} fixed sentences, the whole "
          f"set every step, until loss < {OVERFIT_LOSS:g} or {args.max_steps} steps (CPU)", flush=True)
    data = run_with_progress(request, args)
    if data is None:
        return None
    cap = "" if data["reached"] else f" (the cap: --max-steps {args.max_steps})"
    detail = (f"loss {data['final_loss']:.3f} after {data['steps']} steps{cap}, {data['sentences']} sentences "
              f"({data['tokens']:,} tokens), depth {args.depth}, {os.path.basename(path)}")
    return Measurement(Milestone.OVERFIT, bool(data["reached"]), detail)


def measure_optimizer(args, path: str) -> Measurement | None:
    from nanochat.model_source import todos_in
    todo = next(iter(todos_in(path)), None)
    if todo is not None:  # said here, before the job: the loader's message speaks of base_train's --optimizer flag
        what = todo.message.replace(f"TODO: {todo.qualname}: ", "TODO: ", 1)
        print(f"error: {os.path.basename(path)}:{todo.line}: {todo.qualname} is still a TODO ({what}); "
              f"`nanochat-workbench check {os.path.basename(path)}` says what is left", file=sys.stderr)
        return None
    request = {"milestone": "optimizer", "file": path, "depth": args.depth, "steps": args.steps, "seq": args.seq,
               "batch": 1, "every": 5, "seed": 0}
    print(f"optimizer: the reference GPT (depth {args.depth}), {args.steps} steps of {args.seq} tokens, with "
          f"{os.path.basename(path)} and with the reference's optimizers (CPU)", flush=True)
    data = run_with_progress(request, args)
    if data is None:
        return None
    gaps = [abs(a - b) for a, b in zip(data["learner"], data["reference"])]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    reached = len(data["learner"]) == len(data["reference"]) and gaps[worst] <= args.tolerance
    detail = (f"your {' + '.join(data['uses'])}: largest loss gap {gaps[worst]:.4f} (step {worst + 1}, tolerance "
              f"{args.tolerance:g}) over {args.steps} steps, final loss {data['learner'][-1]:.4f} vs the "
              f"reference's {data['reference'][-1]:.4f}, {os.path.basename(path)}")
    return Measurement(Milestone.OPTIMIZER, reached, detail)


def measure_tokenizer(args, path: str) -> Measurement | None:
    import tiktoken

    from nanochat import embedded_corpus
    from nanochat.tokenizer import SPLIT_PATTERN
    from workbench.course.bpe_check import run_learner

    if args.vocab_size < 257:
        raise MilestoneUsage("--vocab-size must be at least 257 (the 256 byte tokens and one merge)")
    text = "\n\n".join(embedded_corpus.split("train"))[:args.chars]
    held_out = "\n\n".join(embedded_corpus.split("val"))
    print(f"tokenizer: {os.path.basename(path)} train_bpe on {len(text):,} characters of the embedded corpus, vocab "
          f"{args.vocab_size:,}; then {len(held_out):,} held-out characters (its val split) are encoded", flush=True)
    started = time.perf_counter()
    outcome = run_learner(Path(path), text, args.vocab_size, SPLIT_PATTERN, args.timeout)
    if "error" in outcome:
        print(f"error: {outcome['error']}", file=sys.stderr)
        return None
    ranks = {bytes([i]): i for i in range(256)}
    for token in outcome["merges"]:
        ranks.setdefault(token, len(ranks))
    encoding = tiktoken.Encoding("learner", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})
    ratio = len(held_out) / max(1, len(encoding.encode_ordinary(held_out)))
    detail = (f"{ratio:.2f} characters per token on {len(held_out):,} held-out characters, vocab {len(ranks):,} "
              f"trained on {len(text):,} characters in {time.perf_counter() - started:.0f} s, {os.path.basename(path)}")
    return Measurement(Milestone.TOKENIZER, ratio >= TOKENIZER_CHARS_PER_TOKEN, detail)


# ---------------------------------------------------------------------------------------------------------------


def run_with_progress(request: dict, args) -> dict | None:
    """Run the job in its isolated child, printing its progress lines as they come; its data, or None after
    saying in one line why there is none (a TODO or an error in the learner's code)."""
    from workbench.instruments.isolate import JobKind, run_job
    with tempfile.TemporaryDirectory(prefix="wb-milestone-") as scratch:
        request["progress"] = os.path.join(scratch, "progress.txt")
        outcome = {}
        worker = threading.Thread(target=_run, args=(run_job, JOBS, request, args, outcome), daemon=True)
        worker.start()
        shown = 0
        while worker.is_alive():
            worker.join(timeout=0.25)
            shown = _show_progress(request["progress"], shown)
        _show_progress(request["progress"], shown)
    job = outcome["job"]
    for text in job.notes:
        print(f"note: {text}")
    if job.kind == JobKind.OK:
        return job.data
    if job.kind == JobKind.USAGE:
        raise MilestoneUsage(job.error["message"])
    print(f"error: {failure_line(job)}", file=sys.stderr)
    if job.output.strip():
        print("your code's output (the tail):\n" + job.output.rstrip()[-1500:], file=sys.stderr)
    return None


def _run(run_job, module: str, request: dict, args, outcome: dict) -> None:
    outcome["job"] = run_job(module, request, timeout=args.timeout, memory_gb=args.memory)


def _show_progress(path: str, shown: int) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return shown
    for line in lines[shown:]:
        print("  " + line, flush=True)
    return len(lines)


def failure_line(job) -> str:
    """One line: the learner's TODO, or where their code failed and how."""
    if job.todo:
        todo = job.todo
        return (f"{os.path.basename(todo.get('file') or '')}:{todo.get('line')}: {todo.get('qualname')} is still a "
                f"TODO ({todo.get('message')})")
    error = job.error or {}
    where = f"{os.path.basename(error['file'])}:{error.get('line')}: " if error.get("file") else ""
    inside = f"in {error['qualname']}: " if error.get("qualname") else ""
    kind = error.get("type") or "Error"
    message = " ".join(str(error.get("message") or "").split())
    return f"{where}{inside}{kind}: {message}" if not message.startswith(kind) else f"{where}{inside}{message}"

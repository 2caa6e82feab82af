"""Evaluate a chat model on ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval and SpellingBee; ChatCORE.

    python -m nanochat.scripts.chat_eval -i sft                       # all six tasks
    python -m nanochat.scripts.chat_eval -i mid -a ARC-Easy,GSM8K -n 100
    python -m torch.distributed.run --nproc_per_node=8 -m nanochat.scripts.chat_eval -i sft

Categorical tasks (ARC, MMLU) are scored from one forward pass per batch of questions: the answer is the letter
whose token gets the highest logit right after <|assistant_start|>. Generative tasks sample an answer through
the Engine (KV cache; GSM8K answers may call the calculator) and score it with the task's `evaluate` (HumanEval
runs the code with the problem's tests in the sandbox). With `--num-samples k`, a problem counts as solved
when any of its k samples is right (pass@k). ChatCORE is the mean over the six tasks of the centered accuracy
(accuracy - chance) / (1 - chance), chance being 1/4 for the four-choice tasks and 0 for the others.

Under torchrun each rank takes every world_size-th problem and the counts are summed over ranks. Results are
printed as a table and written to `chat_eval_<step>.json` beside the checkpoint.
"""

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext

CHANCE = {"ARC-Easy": 0.25, "ARC-Challenge": 0.25, "MMLU": 0.25, "GSM8K": 0.0, "HumanEval": 0.0, "SpellingBee": 0.0}
TASK_NAMES = tuple(CHANCE)


def make_task(name: str):
    from nanochat.tasks.arc import ARC
    from nanochat.tasks.gsm8k import GSM8K
    from nanochat.tasks.humaneval import HumanEval
    from nanochat.tasks.mmlu import MMLU
    from nanochat.tasks.spelling import SpellingBee

    if name in ("ARC-Easy", "ARC-Challenge"):
        return ARC(name, "test")
    return {"MMLU": lambda: MMLU("all", "test"), "GSM8K": lambda: GSM8K("main", "test"),
            "HumanEval": HumanEval, "SpellingBee": lambda: SpellingBee(size=256, split="test")}[name]()


def task_list(text: str) -> list[str]:
    """argparse type for -a: 'all' or comma-separated task names."""
    if text == "all":
        return list(TASK_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHANCE]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown task {', '.join(unknown) or text!r}; tasks are "
                                         f"{', '.join(TASK_NAMES)} or all")
    return names


def parse_args(argv=None):
    from nanochat.common import HelpFormatter, positive_float, positive_int

    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.chat_eval", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("-i", "--phase", default="sft", choices=("base", "mid", "sft", "rl"), help="checkpoint phase")
    p.add_argument("-a", "--tasks", type=task_list, default=list(TASK_NAMES), help="'all' or names, comma-separated")
    p.add_argument("-g", "--model-tag", dest="model_tag", default=None, help="checkpoint tag (default: the deepest)")
    p.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("-n", "--max-problems", dest="max_problems", type=positive_int, default=None,
                   help="evaluate the first N problems of each task (default: all)")
    p.add_argument("-b", "--batch-size", dest="batch_size", type=positive_int, default=8,
                   help="questions per forward pass (categorical tasks)")
    p.add_argument("--num-samples", dest="num_samples", type=positive_int, default=1,
                   help="samples per generative problem: pass@k with k = this")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=positive_int, default=512)
    p.add_argument("-t", "--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("-k", "--top-k", dest="top_k", type=positive_int, default=50)
    p.add_argument("--timeout", type=positive_float, default=5.0, help="seconds per HumanEval program")
    p.add_argument("--model", default=None,
                   help="'reference' or your model file (default: the one the checkpoint names, if inside this folder)")
    p.add_argument("--device-type", dest="device_type", default=None, help="cuda|mps|cpu (default: autodetect)")
    args = p.parse_args(argv)
    if args.temperature < 0:
        p.error("-t/--temperature must be >= 0")
    if args.num_samples > 1 and args.temperature == 0:
        p.error("--num-samples > 1 needs a temperature > 0 (greedy samples are all the same)")
    return args


def problem_indices(task, max_problems, rank, world_size) -> range:
    n = len(task) if max_problems is None else min(max_problems, len(task))
    return range(rank, n, world_size)


def run_categorical(model, tokenizer, task, indices, batch_size, device) -> list[list[bool]]:
    """One forward per batch of questions; the answer is the likeliest of the question's letters."""
    import torch

    outcomes = []
    for start in range(0, len(indices), batch_size):
        conversations = [task[i] for i in indices[start:start + batch_size]]
        prompts = [tokenizer.render_for_completion(c) for c in conversations]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([p + [tokenizer.get_bos_token_id()] * (width - len(p)) for p in prompts], device=device)
        with torch.inference_mode(), autocast(device):
            logits = model(ids)
        for row, (conversation, prompt) in enumerate(zip(conversations, prompts)):
            letters = conversation["letters"]
            letter_ids = [tokenizer.encode(letter)[0] for letter in letters]
            best = int(logits[row, len(prompt) - 1, letter_ids].argmax())
            outcomes.append([task.evaluate(conversation, letters[best])])
    return outcomes


def run_generative(engine, tokenizer, task, indices, args) -> list[list[bool]]:
    """Sample `num_samples` answers per problem through the Engine and score each with the task."""
    outcomes = []
    for i in indices:
        conversation = task[i]
        prompt = tokenizer.render_for_completion(conversation)
        rows, _ = engine.generate_batch(prompt, num_samples=args.num_samples, max_tokens=args.max_new_tokens,
                                        temperature=args.temperature, top_k=args.top_k, seed=42 + i)
        answers = [tokenizer.decode(row[len(prompt):]) for row in rows]
        outcomes.append([task.evaluate(conversation, answer) for answer in answers])
    return outcomes


def autocast(device):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def all_reduce_counts(passed: int, total: int, ddp: bool) -> tuple[int, int]:
    if not ddp:
        return passed, total
    import torch
    import torch.distributed as dist

    counts = torch.tensor([passed, total], dtype=torch.long,
                          device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(counts)
    return int(counts[0]), int(counts[1])


def evaluate_task(name, model, tokenizer, engine, args, rank, world_size, device) -> dict:
    """Score one task on this rank's share of problems. Returns {"passed", "total", "seconds"} (this rank)."""
    from nanochat.tasks.common import EvalType

    task = make_task(name)
    if name == "HumanEval":
        task.timeout = args.timeout
    indices = problem_indices(task, args.max_problems, rank, world_size)
    start = time.time()
    if task.eval_type == EvalType.CATEGORICAL:
        outcomes = run_categorical(model, tokenizer, task, indices, args.batch_size, device)
    else:
        with autocast(device):  # on cuda the embedding is bf16: every forward needs the autocast
            outcomes = run_generative(engine, tokenizer, task, indices, args)
    return {"passed": sum(any(o) for o in outcomes), "total": len(outcomes), "seconds": time.time() - start}


def chatcore(results: dict) -> float | None:
    """Mean centered accuracy over the six tasks; None unless all six were evaluated."""
    if set(results) != set(TASK_NAMES):
        return None
    return sum((results[n] - CHANCE[n]) / (1 - CHANCE[n]) for n in TASK_NAMES) / len(TASK_NAMES)


def print_table(results, counts, skipped, score, seconds) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="chat eval")
    for column in ("task", "accuracy", "centered", "solved", "problems/s"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for name, accuracy in results.items():
        centered = (accuracy - CHANCE[name]) / (1 - CHANCE[name])
        passed, total = counts[name]
        rate = total / seconds[name] if seconds[name] > 0 else float("nan")
        table.add_row(name, f"{accuracy:.4f}", f"{centered:+.4f}", f"{passed}/{total}", f"{rate:.2f}")
    for name, reason in skipped.items():
        table.add_row(name, "skipped", "", "", "", style="dim")
    table.add_row("ChatCORE", "" if score is None else f"{score:.4f}", "", "", "", style="bold")
    Console().print(table)


def write_results(checkpoint_dir, step, payload) -> str:
    from nanochat.fsutil import atomic_write

    path = os.path.join(checkpoint_dir, f"chat_eval_{step:06d}.json")
    atomic_write(path, json.dumps(payload, indent=2) + "\n")
    return path


def resolve_checkpoint(phase, model_tag, step):
    from nanochat.checkpoint_manager import checkpoints_dir, find_largest_model, find_last_step

    root = checkpoints_dir(phase)
    model_tag = model_tag or find_largest_model(root)
    step = find_last_step(os.path.join(root, model_tag)) if step is None else step
    return os.path.join(root, model_tag), model_tag, step


def evaluate_all(args, model, tokenizer, ddp, rank, world_size, device):
    """Every requested task; returns (results, counts, skipped, seconds)."""
    from nanochat.engine import Engine
    from nanochat.tasks.common import MissingDataError

    engine = Engine(model, tokenizer)
    results, counts, skipped, seconds = {}, {}, {}, {}
    for name in args.tasks:
        try:
            share = evaluate_task(name, model, tokenizer, engine, args, rank, world_size, device)
        except MissingDataError as e:
            if len(args.tasks) == 1:
                raise
            skipped[name] = str(e)
            continue
        passed, total = all_reduce_counts(share["passed"], share["total"], ddp)
        if total == 0:
            skipped[name] = f"{name}: no problems to evaluate"
            continue
        results[name], counts[name], seconds[name] = passed / total, [passed, total], share["seconds"]
    return results, counts, skipped, seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    from nanochat.checkpoint_manager import CheckpointError, load_model
    from nanochat.common import compute_cleanup, compute_init, print0
    from nanochat.model_source import ModelSourceError
    from nanochat.tasks.common import MissingDataError

    ddp, rank, _, world_size, device = compute_init(args.device_type)
    try:
        checkpoint_dir, tag, step = resolve_checkpoint(args.phase, args.model_tag, args.step)
        model, tokenizer, _ = load_model(args.phase, device, "eval", model_tag=tag, step=step,
                                         model_source=args.model)
        results, counts, skipped, seconds = evaluate_all(args, model, tokenizer, ddp, rank, world_size, device)
    except (CheckpointError, ModelSourceError, MissingDataError, ValueError) as e:
        print(f"chat_eval: {e}", file=sys.stderr)
        compute_cleanup()
        return 1
    score = chatcore(results)
    if rank == 0:
        for reason in skipped.values():
            print0(f"skipped: {reason}")
        print_table(results, counts, skipped, score, seconds)
        payload = {"phase": args.phase, "model_tag": tag, "step": step, "results": results, "ChatCORE": score,
                   "counts": counts, "skipped": skipped, "max_problems": args.max_problems,
                   "num_samples": args.num_samples, "world_size": world_size}
        print0(f"results written to {write_results(checkpoint_dir, step, payload)}")
        if args.phase != "base":  # the base stage's report section is base_eval's (CORE)
            log_report(args.phase, results, score)
    compute_cleanup()
    return 0


def log_report(phase, results, score) -> None:
    try:
        from nanochat.report import log_section
    except ImportError:
        return
    items = {**results, **({"ChatCORE": score} if score is not None else {})}
    log_section(f"{phase}_eval", f"Chat evaluation ({phase})", items)


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate a base model: the CORE metric (22 few-shot DCLM tasks), bits per byte on train/val, samples.

    python -m nanochat.scripts.base_eval --download          # fetch the DCLM eval bundle once (~ 25 MB zip)
    python -m nanochat.scripts.base_eval                     # the deepest base checkpoint, latest step
    python -m nanochat.scripts.base_eval --max-per-task 100  # a quicker, noisier CORE
    python -m torch.distributed.run --nproc_per_node=8 -m nanochat.scripts.base_eval

See nanochat/core_eval.py for how each task is scored. Under torchrun each rank scores every world_size-th
item and the counts are summed. Results are printed as a table and written to `core_eval_<step>.json` beside
the checkpoint.
"""

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path


def parse_args(argv=None):
    from nanochat.common import HelpFormatter, positive_int

    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.base_eval", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("-i", "--phase", default="base", choices=("base", "mid", "sft", "rl"), help="checkpoint phase")
    p.add_argument("-g", "--model-tag", dest="model_tag", default=None, help="checkpoint tag (default: the deepest)")
    p.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--max-per-task", dest="max_per_task", type=positive_int, default=None,
                   help="score the first N items of each task (default: all)")
    p.add_argument("--bundle-dir", dest="bundle_dir", default=None,
                   help="eval bundle directory (default: $NANOCHAT_BASE_DIR/eval_bundle)")
    p.add_argument("--download", action="store_true", help="download the eval bundle and exit")
    p.add_argument("--bpb-tokens", dest="bpb_tokens", type=int, default=16384,
                   help="tokens per split for bits per byte (0: skip)")
    p.add_argument("--sample-tokens", dest="sample_tokens", type=int, default=24,
                   help="greedy sample length (0: no samples)")
    p.add_argument("--model", default=None,
                   help="'reference' or your model file (default: the one the checkpoint names, if inside this folder)")
    p.add_argument("--device-type", dest="device_type", default=None, help="cuda|mps|cpu (default: autodetect)")
    return p.parse_args(argv)


def run_core(model, tokenizer, tasks, args, ddp, rank, world_size, device) -> dict:
    """Every task of the bundle: {label: {"accuracy", "centered", "correct", "total", "seconds"}}."""
    import torch

    from nanochat.core_eval import centered, evaluate_task
    from nanochat.scripts.chat_eval import all_reduce_counts

    max_len = model.config.sequence_len
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    results = {}
    for task in tasks:
        start = time.time()
        with amp:
            correct, total = evaluate_task(model, tokenizer, task, device, args.max_per_task, max_len,
                                           rank, world_size)
        correct, total = all_reduce_counts(correct, total, ddp)
        accuracy = correct / max(total, 1)
        results[task.label] = {"accuracy": accuracy, "centered": centered(accuracy, task.baseline),
                               "correct": correct, "total": total, "seconds": time.time() - start}
    return results


def run_bpb(model, tokenizer, tokens: int, device) -> dict:
    """Bits per byte on a few batches of each split (the data base_loss uses)."""
    from nanochat.dataloader import tokenizing_distributed_data_loader
    from nanochat.loss_eval import evaluate_bpb

    T = model.config.sequence_len
    steps = max(1, tokens // T)
    token_bytes = tokenizer.get_token_bytes(device)
    return {split: evaluate_bpb(model, tokenizing_distributed_data_loader(1, T, split, device=device,
                                                                         tokenizer=tokenizer), steps, token_bytes)
            for split in ("train", "val")}


def print_samples(model, tokenizer, max_tokens: int) -> None:
    from nanochat.engine import Engine
    from nanochat.scripts.base_loss import SAMPLE_PROMPTS

    engine = Engine(model, tokenizer)
    for prompt in SAMPLE_PROMPTS:
        out, _ = engine.generate_batch(tokenizer(prompt, prepend=tokenizer.get_bos_token_id()), num_samples=1,
                                       max_tokens=max_tokens, temperature=0)
        print(f"  {tokenizer.decode(out[0][1:])!r}")


def print_table(results: dict, core: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CORE")
    for column in ("task", "accuracy", "centered", "correct", "items/s"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for label, r in results.items():
        rate = r["total"] / r["seconds"] if r["seconds"] > 0 else float("nan")
        table.add_row(label, f"{r['accuracy']:.4f}", f"{r['centered']:+.4f}", f"{r['correct']}/{r['total']}",
                      f"{rate:.2f}")
    table.add_row("CORE", "", f"{core:+.4f}", "", "", style="bold")
    Console().print(table)


def download(args) -> int:
    from nanochat.core_eval import download_bundle
    from nanochat.dataset import DownloadError

    try:
        print(f"eval bundle in {download_bundle()}")
    except DownloadError as e:
        print(f"base_eval: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.download:
        return download(args)
    from nanochat.checkpoint_manager import CheckpointError, load_model
    from nanochat.common import compute_cleanup, compute_init, print0
    from nanochat.core_eval import BundleError, bundle_dir, load_bundle
    from nanochat.model_source import ModelSourceError
    from nanochat.scripts.chat_eval import resolve_checkpoint

    try:
        tasks = load_bundle(Path(args.bundle_dir) if args.bundle_dir else bundle_dir())
    except BundleError as e:
        print(f"base_eval: {e}", file=sys.stderr)
        return 1
    ddp, rank, _, world_size, device = compute_init(args.device_type)
    try:
        checkpoint_dir, tag, step = resolve_checkpoint(args.phase, args.model_tag, args.step)
        model, tokenizer, _ = load_model(args.phase, device, "eval", model_tag=tag, step=step,
                                         model_source=args.model)
        results = run_core(model, tokenizer, tasks, args, ddp, rank, world_size, device)
        bpb = run_bpb(model, tokenizer, args.bpb_tokens, device) if args.bpb_tokens > 0 else {}
    except (CheckpointError, ModelSourceError, OSError, ValueError) as e:
        print(f"base_eval: {e}", file=sys.stderr)
        compute_cleanup()
        return 1
    core = sum(r["centered"] for r in results.values()) / len(results)
    if rank == 0:
        print_table(results, core)
        for split, value in bpb.items():
            print0(f"{split} bpb: {value:.4f}")
        if args.sample_tokens > 0:
            print_samples(model, tokenizer, args.sample_tokens)
        write_results(checkpoint_dir, tag, step, args.phase, results, core, bpb)
    compute_cleanup()
    return 0


def write_results(checkpoint_dir, tag, step, phase, results, core, bpb) -> None:
    from nanochat.fsutil import atomic_write

    payload = {"phase": phase, "model_tag": tag, "step": step, "CORE": core, "bpb": bpb,
               "results": {label: r["accuracy"] for label, r in results.items()},
               "centered": {label: r["centered"] for label, r in results.items()},
               "counts": {label: [r["correct"], r["total"]] for label, r in results.items()}}
    path = os.path.join(checkpoint_dir, f"core_eval_{step:06d}.json")
    atomic_write(path, json.dumps(payload, indent=2) + "\n")
    print(f"results written to {path}")
    try:
        from nanochat.report import log_section
    except ImportError:
        return
    log_section("base_eval", "Base model evaluation (CORE)",
                {"CORE": core, **{f"{s} bpb": v for s, v in bpb.items()}, **payload["results"]})


if __name__ == "__main__":
    sys.exit(main())

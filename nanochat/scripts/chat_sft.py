"""Supervised fine-tuning: train the chat model on whole conversations, with the loss on the assistant's words only.

    python -m nanochat.scripts.chat_sft                                     # the latest mid checkpoint
    python -m nanochat.scripts.chat_sft --data offline --num_iterations=40  # a laptop, no downloads
    torchrun --standalone --nproc_per_node=8 -m nanochat.scripts.chat_sft

Unlike mid-training, each row is one conversation (cut to the model's context), rows of a micro-batch are
padded to the longest, and only what the assistant writes is a target: the user's turns, the calculator's
output (which the engine forces at inference) and the padding have target -1
(nanochat.posttrain.batches.collate_sft). Rank r takes examples r, r+W, ... of the shuffled mixture;
`--examples_per_step` conversations make one optimizer step (gradient accumulation over
`--device_batch_size` rows per rank). The learning rate starts at `--init_lr_frac` of base_train's and falls
linearly to 0; the horizon is `--num_epochs` passes unless `--num_iterations` says otherwise.

Every `--eval_every` steps: validation bits per byte on the assistant tokens of held-out conversations. At the
end, a few chat_eval tasks (`--chat_eval_tasks`, `--chat_eval_problems`) measure the model. Checkpoints go to
`sft_checkpoints/<tag>/` with the data position (`--resume_from_step` continues exactly); metrics to its
metrics.jsonl.
"""

import dataclasses
import functools
import math

from nanochat.common import positive_int, print0
from nanochat.loss_eval import evaluate_bpb
from nanochat.posttrain import mixtures
from nanochat.posttrain.batches import collate_sft
from nanochat.posttrain.stage import (Stage, check_resume_args, check_stage_args, log_record, log_train_step,
                                      open_stage, print_done, report_items, restore_loop, run_loop, run_main,
                                      stage_parser, StageFlags)
from nanochat.tokenizer import get_token_bytes
from nanochat.training import Timer, mean_over_ranks


def parse_args(argv=None):
    p, g = stage_parser("python -m nanochat.scripts.chat_sft", __doc__.split("\n")[0], ("mid", "base"), StageFlags(
        data_help="full: nanochat's SFT mixture (downloaded tasks); offline: generated and packaged data only",
        iterations_help="optimizer steps; -1 = from --num_epochs", init_lr_frac=0.02, eval_every=100))
    g.add_argument("--device_batch_size", type=positive_int, default=4, help="conversations per forward per rank")
    g.add_argument("--examples_per_step", type=positive_int, default=32, help="conversations per optimizer step")
    g.add_argument("--num_epochs", type=positive_int, default=1, help="passes over the mixture")
    g.add_argument("--eval_steps", type=positive_int, default=100, help="val batches per eval")
    g.add_argument("--chat_eval_tasks", default="ARC-Easy,MMLU",
                   help="chat_eval tasks measured at the end (comma-separated; missing data is skipped)")
    g.add_argument("--chat_eval_problems", type=int, default=1024, help="problems per task at the end; 0 = none")
    args = p.parse_args(argv)
    check_stage_args(p, args)
    if args.chat_eval_problems < 0:
        p.error(f"--chat_eval_problems must be >= 0, got {args.chat_eval_problems}")
    return args


def sft_loader(task, tokenizer, rank, world_size, rows, cursor, max_tokens, device):
    """Forever: (inputs, targets, cursor after them). Rank r reads examples r + k*W for k = cursor, cursor+1, ...;
    a conversation with nothing for the assistant left inside `max_tokens` is skipped."""
    pad_id = tokenizer.encode_special("<|assistant_end|>")
    while True:
        batch = []
        while len(batch) < rows:
            conversation = task[(rank + cursor * world_size) % len(task)]
            cursor += 1
            ids, mask = tokenizer.render_conversation(conversation, max_tokens=max_tokens)
            if any(mask[1:]):
                batch.append((ids, mask))
        inputs, targets = collate_sft(batch, pad_id, device=device)
        yield inputs, targets, cursor


@dataclasses.dataclass
class SFTRun:
    """What the SFT steps read: the stage, the batch geometry and the data."""
    stage: Stage
    accum_steps: int
    num_iterations: int
    loader: object
    batch: tuple  # the prefetched (inputs, targets, cursor)
    val_task: object
    token_bytes: object
    momentum: float  # Muon's, left where setup_optimizers put it (no warm-up in fine-tuning)


def train_step(run, loop):
    """One optimizer step over `examples_per_step` conversations; the lr falls linearly to 0."""
    stage, compute, args = run.stage, run.stage.compute, run.stage.args
    code = stage.code.training  # the learner's schedule and step with --training, else nanochat.training's
    with Timer(compute) as timer:
        loss, loop.data_state, run.batch = code.accumulate_gradients(stage.model, run.loader, run.batch,
                                                                     run.accum_steps, compute.autocast_ctx)
        lrm = code.lr_multiplier(loop.step, run.num_iterations, 0.0, 1.0, 0.0)
        code.optimizer_step(stage.orig_model, stage.optimizers, stage.optimizers[1], lrm, run.momentum, args.grad_clip)
        loss = mean_over_ranks(loss, compute)
    if not math.isfinite(loss):
        raise SystemExit(f"error: the training loss became {loss} at step {loop.step}; lower the learning rates")
    log_train_step(stage, loop, run.num_iterations, loss, timer.seconds,
                   {"lr_mult": lrm, "examples": (loop.step + 1) * args.examples_per_step})


def evaluate(run, loop):
    """Bits per byte of the assistant's tokens in held-out conversations."""
    stage, compute, args = run.stage, run.stage.compute, run.stage.args
    batches = sft_loader(run.val_task, stage.tokenizer, compute.rank, compute.world_size, args.device_batch_size, 0,
                         stage.config.sequence_len + 1, compute.device)
    stage.model.eval()
    with compute.autocast_ctx:
        bpb = evaluate_bpb(stage.model, batches, args.eval_steps, run.token_bytes)
    stage.model.train()
    loop.best["min_val_bpb"] = min(bpb, loop.best.get("min_val_bpb", math.inf))
    loop.best["val_bpb"] = bpb
    print0(f"step {loop.step:05d} | val bpb (assistant tokens) {bpb:.4f}")
    log_record(stage, {"step": loop.step, "val_bpb": bpb, "elapsed_s": loop.elapsed})


def final_chat_eval(stage, args):
    """A few chat_eval tasks on the trained model; {task: accuracy}. Tasks without data are skipped (named)."""
    from nanochat.scripts import chat_eval

    if args.chat_eval_problems == 0:
        return {}
    eval_args = chat_eval.parse_args(["-i", "sft", "-a", args.chat_eval_tasks, "-n", str(args.chat_eval_problems),
                                      "--max-new-tokens", "64"])
    compute = stage.compute
    stage.orig_model.eval()
    results, _, skipped, _ = chat_eval.evaluate_all(eval_args, stage.orig_model, stage.tokenizer, compute.ddp,
                                                    compute.rank, compute.world_size, compute.device)
    for reason in skipped.values():
        print0(f"chat eval skipped: {reason}")
    for name, accuracy in results.items():
        print0(f"chat eval {name}: {accuracy:.4f}")
    return results


def train(args):
    train_task = mixtures.load_or_refuse(mixtures.sft_mixture(args.data, "train"), args.data)
    val_task = mixtures.load_or_refuse(mixtures.sft_mixture(args.data, "val"), args.data)
    stage, resume_meta, optimizer_data = open_stage(args, "sft")
    check_resume_args(stage, resume_meta, ("device_batch_size", "examples_per_step", "data"))
    compute = stage.compute
    rows_per_step = args.device_batch_size * compute.world_size
    if args.examples_per_step % rows_per_step:
        raise SystemExit(f"error: --examples_per_step={args.examples_per_step} is not a multiple of "
                         f"device_batch_size x ranks = {rows_per_step}")
    accum_steps = args.examples_per_step // rows_per_step
    num_iterations = args.num_iterations
    if num_iterations < 0:
        num_iterations = max(1, len(train_task) * args.num_epochs // args.examples_per_step)
    print0(f"data: {args.data} SFT mixture, {len(train_task):,} conversations | {args.examples_per_step} per step "
           f"({args.device_batch_size} x {compute.world_size} rank(s) x {accum_steps}) | {num_iterations} steps")

    loop = restore_loop(stage, resume_meta, optimizer_data)
    loader = sft_loader(train_task, stage.tokenizer, compute.rank, compute.world_size, args.device_batch_size,
                        loop.data_state or 0, stage.config.sequence_len + 1, compute.device)
    run = SFTRun(stage, accum_steps, num_iterations, loader, next(loader), val_task,
                 get_token_bytes(device=compute.device), stage.optimizers[1].param_groups[0]["momentum"])
    if not run_loop(stage, loop, num_iterations, functools.partial(train_step, run), functools.partial(evaluate, run),
                    args.eval_every):
        return
    results = final_chat_eval(stage, args)
    from nanochat import report

    report.log_section("sft", "Supervised fine-tuning", {
        **report_items(stage, loop, num_iterations),
        "data": f"{args.data} mixture ({len(train_task):,} conversations)",
        "examples": loop.step * args.examples_per_step, **{f"{k} (end of SFT)": v for k, v in results.items()}})
    print_done(stage, loop)


def main(argv=None):
    run_main(train, parse_args(argv))


if __name__ == "__main__":
    main()

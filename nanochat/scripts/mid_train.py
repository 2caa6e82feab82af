"""Mid-training: continue the base model on conversations, so it learns the chat format, multiple-choice
answers, calculator calls and spelling, with the same optimizers and schedule as pretraining.

    python -m nanochat.scripts.mid_train                                    # the latest base checkpoint
    python -m nanochat.scripts.mid_train --data offline --max_seq_len=512 --device_batch_size=4 \
        --total_batch_size=2048 --num_iterations=60                          # a laptop, no downloads
    torchrun --standalone --nproc_per_node=8 -m nanochat.scripts.mid_train

Conversations of the mixture (nanochat.posttrain.mixtures; `--data full` needs the downloaded tasks) are
rendered with the special tokens (<|user_start|> ... <|assistant_end|>, calculator calls as
<|python_start|>expr<|python_end|><|output_start|>result<|output_end|>) and packed end to end into rows of
`--max_seq_len`, every token a target, like pretraining documents. Rank r reads conversations r, r+W, r+2W...
of the shuffled mixture. The horizon is one pass over the mixture unless `--num_iterations` says otherwise.

Each step is base_train's: gradient accumulation up to `--total_batch_size` tokens, clipping, Muon + AdamW,
learning rate flat then decayed to 0 over the last `--warmdown_ratio` of the steps, Muon momentum warm-up.
Every `--eval_every` steps: validation bits per byte on held-out conversations. Checkpoints go to
`mid_checkpoints/<tag>/` with the packing position, so `--resume_from_step` continues exactly; metrics to
its metrics.jsonl. Ctrl-C saves and says how to resume.
"""

import dataclasses
import functools
import math

from nanochat.common import positive_int, print0
from nanochat.loss_eval import evaluate_bpb
from nanochat.posttrain import mixtures
from nanochat.posttrain.batches import PackPosition, packed_batch
from nanochat.posttrain.stage import (Stage, check_resume_args, check_stage_args, log_record, log_train_step,
                                      open_stage, print_done, report_items, restore_loop, run_loop, run_main,
                                      stage_parser, StageFlags, steady_throughput)
from nanochat.tokenizer import get_token_bytes
from nanochat.training import Timer, flops_per_token, mean_over_ranks, peak_flops_per_device

HORIZON_SAMPLE = 2000  # conversations rendered to estimate the tokens of one pass


def parse_args(argv=None):
    p, g = stage_parser("python -m nanochat.scripts.mid_train", __doc__.split("\n")[0], ("base",), StageFlags(
        data_help="full: nanochat's mixture (downloaded tasks); offline: generated and packaged data only",
        iterations_help="optimizer steps; -1 = one pass over the mixture", init_lr_frac=1.0, eval_every=150))
    g.add_argument("--max_seq_len", type=positive_int, default=2048, help="tokens per row")
    g.add_argument("--device_batch_size", type=positive_int, default=32, help="rows per forward/backward per rank")
    g.add_argument("--total_batch_size", type=positive_int, default=524288, help="tokens per optimizer step")
    g.add_argument("--warmdown_ratio", type=float, default=0.2, help="fraction of steps of linear decay to 0")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile (default: on for cuda)")
    g.add_argument("--eval_tokens", type=positive_int, default=None,
                   help="val tokens per eval (default: 20 x total_batch_size)")
    args = p.parse_args(argv)
    check_stage_args(p, args)
    if not 0.0 <= args.warmdown_ratio <= 1.0:
        p.error(f"--warmdown_ratio must be between 0 and 1, got {args.warmdown_ratio}")
    return args


class ConversationTokens:
    """index -> the token ids of this rank's index-th conversation (global r + index*W, wrapping around)."""

    def __init__(self, task, tokenizer, rank, world_size, max_tokens):
        self.task, self.tokenizer = task, tokenizer
        self.rank, self.world_size, self.max_tokens = rank, world_size, max_tokens
        self.cached = functools.lru_cache(maxsize=4096)(self._render)

    def _render(self, index):
        conversation = self.task[(self.rank + index * self.world_size) % len(self.task)]
        ids, _ = self.tokenizer.render_conversation(conversation, max_tokens=self.max_tokens)
        return ids

    def __call__(self, index):
        return self.cached(index)


def packed_loader(conversations, start, rows, seq_len, device):
    """Forever: (inputs, targets, position after them as a dict), from `start` (a PackPosition)."""
    position = start
    while True:
        x, y, position = packed_batch(conversations, position, rows, seq_len, device)
        yield x, y, position.to_dict()


def horizon(args, task, tokenizer):
    """(steps, how): --num_iterations, or one pass over the mixture estimated from a sample of conversations."""
    if args.num_iterations > 0:
        return args.num_iterations, "--num_iterations"
    sample = min(len(task), HORIZON_SAMPLE)
    sampled = sum(len(tokenizer.render_conversation(task[i], max_tokens=10 * args.max_seq_len)[0])
                  for i in range(sample))
    tokens = sampled / sample * len(task)
    steps = max(1, math.ceil(tokens / args.total_batch_size))
    return steps, f"one pass over {len(task):,} conversations, ~{tokens:,.0f} tokens"


@dataclasses.dataclass
class MidRun:
    """What the mid-training steps read: the stage, the batch geometry and the data."""
    stage: Stage
    accum_steps: int
    num_iterations: int
    eval_steps: int
    loader: object  # packed_loader over the training mixture
    batch: tuple  # the prefetched (inputs, targets, position) the next step trains on first
    val_task: object
    token_bytes: object
    flops_per_token: float
    peak_flops: float | None  # per device; None off the GPUs whose peak is known (MFU is then not reported)


def train_step(run, loop):
    """One optimizer step: accumulate over packed rows, clip, schedule, step; log it."""
    stage, compute, args = run.stage, run.stage.compute, run.stage.args
    code = stage.code.training  # the learner's schedule and step with --training, else nanochat.training's
    with Timer(compute) as timer:
        loss, loop.data_state, run.batch = code.accumulate_gradients(stage.model, run.loader, run.batch,
                                                                     run.accum_steps, compute.autocast_ctx)
        lrm = code.lr_multiplier(loop.step, run.num_iterations, 0.0, args.warmdown_ratio, 0.0)
        code.optimizer_step(stage.orig_model, stage.optimizers, stage.optimizers[1], lrm,
                            code.muon_momentum(loop.step), args.grad_clip)
        loss = mean_over_ranks(loss, compute)
    if not math.isfinite(loss):
        raise SystemExit(f"error: the training loss became {loss} at step {loop.step}; lower the learning rates")
    tok_per_sec = args.total_batch_size / timer.seconds
    log_train_step(stage, loop, run.num_iterations, loss, timer.seconds,
                   {"lr_mult": lrm, "tok_per_sec": tok_per_sec, "mfu": mfu(run, tok_per_sec),
                    "total_tokens": (loop.step + 1) * args.total_batch_size})


def mfu(run, tok_per_sec):
    """Model FLOPs utilisation: the FLOPs done per second over the devices' peak (None where it is unknown)."""
    if not run.peak_flops or not tok_per_sec:
        return None
    return run.flops_per_token * tok_per_sec / (run.peak_flops * run.stage.compute.world_size)


def evaluate(run, loop):
    """Validation bits per byte on the held-out conversations, packed the same way."""
    stage, compute, args = run.stage, run.stage.compute, run.stage.args
    render = ConversationTokens(run.val_task, stage.tokenizer, compute.rank, compute.world_size, 10 * args.max_seq_len)
    batches = packed_loader(render, PackPosition(), args.device_batch_size, args.max_seq_len, compute.device)
    stage.model.eval()
    with compute.autocast_ctx:
        bpb = evaluate_bpb(stage.model, batches, run.eval_steps, run.token_bytes)
    stage.model.train()
    loop.best["min_val_bpb"] = min(bpb, loop.best.get("min_val_bpb", math.inf))
    loop.best["val_bpb"] = bpb
    print0(f"step {loop.step:05d} | val bpb {bpb:.4f}")
    log_record(stage, {"step": loop.step, "val_bpb": bpb, "elapsed_s": loop.elapsed})


def train(args):
    train_task = mixtures.load_or_refuse(mixtures.mid_mixture(args.data, "train"), args.data)
    val_task = mixtures.load_or_refuse(mixtures.mid_mixture(args.data, "val"), args.data)
    stage, resume_meta, optimizer_data = open_stage(args, "mid", use_compile=args.compile)
    check_resume_args(stage, resume_meta, ("device_batch_size", "total_batch_size", "max_seq_len", "data"))
    compute = stage.compute
    B, T = args.device_batch_size, args.max_seq_len
    tokens_per_micro_step = B * T * compute.world_size
    if args.total_batch_size % tokens_per_micro_step:
        raise SystemExit(f"error: --total_batch_size={args.total_batch_size} is not a multiple of device_batch_size x "
                         f"max_seq_len x ranks = {tokens_per_micro_step}")
    accum_steps = args.total_batch_size // tokens_per_micro_step
    num_iterations, how = horizon(args, train_task, stage.tokenizer)
    eval_steps = max(1, (args.eval_tokens or 20 * args.total_batch_size) // tokens_per_micro_step)
    print0(f"data: {args.data} mixture, {len(train_task):,} conversations | batch {B} x {T} x {compute.world_size} "
           f"rank(s) x {accum_steps} = {args.total_batch_size:,} tokens | horizon {num_iterations} steps ({how})")

    loop = restore_loop(stage, resume_meta, optimizer_data)
    render = ConversationTokens(train_task, stage.tokenizer, compute.rank, compute.world_size, 10 * T)
    start = PackPosition(**loop.data_state) if loop.data_state else PackPosition()
    loader = packed_loader(render, start, B, T, compute.device)
    run = MidRun(stage, accum_steps, num_iterations, eval_steps, loader, next(loader), val_task,
                 get_token_bytes(device=compute.device), flops_per_token(stage.orig_model, stage.config),
                 peak_flops_per_device(compute.device_type, None))
    finished = run_loop(stage, loop, num_iterations, functools.partial(train_step, run),
                        functools.partial(evaluate, run), args.eval_every)
    if not finished:
        return
    from nanochat import report

    report.log_section("mid", "Mid-training", {
        **report_items(stage, loop, num_iterations, tokens_per_step=args.total_batch_size),
        "data": f"{args.data} mixture ({len(train_task):,} conversations)",
        "batch": f"{args.total_batch_size:,} tokens ({B} x {T} x {compute.world_size} x {accum_steps})",
        "MFU (after step 0)": mfu(run, steady_throughput(loop, args.total_batch_size))})
    print_done(stage, loop)


def main(argv=None):
    run_main(train, parse_args(argv))


if __name__ == "__main__":
    main()

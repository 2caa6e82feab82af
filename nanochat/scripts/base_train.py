"""Pretrain the base model: next-token prediction on web text (or the embedded corpus), with Muon + AdamW.

On a laptop (CPU, offline, a few seconds; the embedded corpus and tokenizer are used when nothing is downloaded):

    python -m nanochat.scripts.base_train --depth=4 --max_seq_len=512 --device_batch_size=1 \
        --total_batch_size=512 --num_iterations=1

On a GPU node (one process per GPU; gradients are averaged by the distributed optimizers):

    torchrun --standalone --nproc_per_node=8 -m nanochat.scripts.base_train -- --depth=20 --run=d20

What one run does, top to bottom:
1. build the model from `--depth` (n_layer = depth, n_embd = 64·depth, head dim 128) on the device,
   from the reference `nanochat.gpt` or the learner's file given with `--model`; the optimizers, the data
   loader and the schedule/step likewise come from the learner's copies of nanochat/muon.py or adamw.py,
   dataloader.py and training.py with `--optimizer`, `--dataloader`, `--training` (nanochat/learner_code.py);
2. work out the batch: `--total_batch_size` tokens per optimizer step, made of `--device_batch_size` rows of
   `--max_seq_len` tokens per forward/backward on each rank, and as many gradient-accumulation micro-steps
   as that takes;
3. work out the horizon: `--num_iterations`, or from `--target_flops`, or Chinchilla-style from
   `--target_param_data_ratio` (tokens = ratio × parameters);
4. train: per step, accumulate gradients, clip, set the learning rates from the warmup/flat/warmdown
   schedule and Muon's momentum from its warmup, step both optimizers;
5. every `--eval_every` steps measure validation bits per byte, every `--sample_every` print a few greedy
   samples, every `--save_every` steps (and at the end) save a checkpoint. At the end the checkpoint is
   written FIRST, then the final evaluation runs, so an evaluation that crashes loses no training.

Progress is printed and appended as JSON lines to `<checkpoint dir>/metrics.jsonl` after the first step, then
every `--log_every` steps (default: every step on cpu, every 10 on cuda/mps) and before each save, evaluation
and sampling. Between two lines the losses stay on the device, so the host never waits for it in between:
    {"step", "loss", "loss_smooth", "lr_mult", "tok_per_sec", "mfu", "dt_ms", "eta_s", "elapsed_s",
     "total_tokens"}   at a reported step (loss = that step's mean training loss, loss_smooth = the smoothed
                       loss over every step, dt_ms/tok_per_sec/mfu = the mean over the steps since the last line)
    {"step", "val_bpb", "elapsed_s"}   after each evaluation
The next batches are tokenized in a background thread while a step runs (nanochat/prefetch.py).

MFU is the model FLOPs per second over the accelerator's peak. The peak is known for a few GPUs (H100/H200
SXM 989 TFLOP/s bf16 dense, H100 PCIe 756, A100 312); elsewhere (other GPUs, CPU, MPS) MFU is null unless
you state a peak with `--peak_flops`.

`--device_batch_size=auto` finds a batch that fits. On cuda it tries a forward+backward at the largest power
of two the total batch allows and halves it on out-of-memory. On cpu/mps running out of memory means the OS
killing the process (or swapping), so nothing is probed: the activation memory of one sequence is estimated
(fp32, about 4·T·(16·L·n_embd + 5·vocab) bytes, measured to be on the safe side of the real peak on CPU) and
the largest power of two whose activations, with the weights/gradients/optimizer state, fit in half of the
currently available RAM is taken.

Ctrl-C (or SIGTERM) stops at the end of the current step, saves a checkpoint and says how to resume; a second
Ctrl-C stops at once.
"""

import argparse
import dataclasses
import importlib.util
import math
import os
import time

import torch
import torch.distributed as dist

from nanochat import dataset, learner_code, model_source as model_sources
from nanochat.checkpoint_manager import CheckpointError, find_last_step, load_checkpoint, model_path, save_checkpoint
from nanochat.common import (HelpFormatter, autodetect_device_type, compute_dtype, from_a_collective, get_base_dir,
                             positive_int, print0, process_group_exit)
from nanochat.adamw import with_fused_kernel
from nanochat.engine import Engine
from nanochat.learner_code import LearnerCode
from nanochat.loss_eval import evaluate_bpb
from nanochat.model_source import LearnerFileError
from nanochat.prefetch import Prefetcher
from nanochat.tokenizer import get_token_bytes, get_tokenizer
from nanochat.training import (Compute, StopFlag, Timer, any_rank, append_jsonl, config_dict, flops_per_token,
                               format_duration, means_over_ranks, peak_flops_per_device, setup_compute,
                               truncate_metrics)

SAMPLE_PROMPTS = [
    "The capital of France is",
    "A list in Python is",
    "The opposite of hot is",
    "If yesterday was Friday, then tomorrow will be",
]
# progress lines on cuda/mps: reading a step's loss makes the host wait for the device, which then idles until
# the host has queued the next step's kernels; every 10 steps that costs a tenth as much
LOG_EVERY_ACCELERATOR = 10


# ---------------------------------------------------------------------------------------------------------------
# command line

def batch_size_arg(text):
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m nanochat.scripts.base_train",
        description="Pretrain a base GPT. Laptop example: --depth=4 --max_seq_len=512 --device_batch_size=1 "
                    "--total_batch_size=512 --num_iterations=1",
        formatter_class=HelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--run", default="dummy", help="run name for wandb; 'dummy' never logs to wandb")
    g.add_argument("--wandb", action="store_true", help="log to Weights & Biases (needs `pip install wandb`)")
    g.add_argument("--device_type", default="", help="cuda|mps|cpu; empty = autodetect (cuda > mps > cpu)")
    g.add_argument("--model", default=model_sources.REFERENCE,
                   help="'reference' (nanochat.gpt) or the path of your own model file defining GPT and GPTConfig")
    learner_code.add_flags(g)
    g.add_argument("--model-tag", "--model_tag", dest="model_tag", default=None,
                   help="checkpoint directory name (default: d<depth>)")
    g.add_argument("--data", default="auto", choices=list(dataset.SOURCES),
                   help="training text: downloaded parquet shards, the embedded offline corpus, or auto "
                        "(shards when any are downloaded)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for cuda; on cpu/mps only for a run long enough "
                        "to repay the compile time, see COMPILE_MIN_FLOPS)")
    g.add_argument("--peak_flops", type=float, default=None,
                   help="peak FLOP/s per device for MFU (default: known GPUs only; MFU is null otherwise)")
    g.add_argument("--log_every", type=positive_int, default=None,
                   help="steps per progress line and metrics record (default: 1 on cpu, where reading the loss "
                        f"costs nothing; {LOG_EVERY_ACCELERATOR} on cuda/mps, which otherwise wait for the device "
                        "every step)")
    g = p.add_argument_group("model")
    g.add_argument("--depth", type=positive_int, default=20, help="layers; n_embd = 64*depth, head dim 128")
    g.add_argument("--max_seq_len", type=positive_int, default=2048, help="tokens per training row")
    g = p.add_argument_group("horizon (first one set wins)")
    g.add_argument("--num_iterations", type=int, default=-1, help="optimizer steps; -1 = from the options below")
    g.add_argument("--target_flops", type=float, default=-1.0, help="training FLOPs budget; -1 = unused")
    g.add_argument("--target_param_data_ratio", type=float, default=20.0,
                   help="tokens = ratio x parameters (Chinchilla: 20)")
    g = p.add_argument_group("batch")
    g.add_argument("--device_batch_size", type=batch_size_arg, default=32,
                   help="rows per forward/backward per rank, or 'auto' for the largest power of two that fits")
    g.add_argument("--total_batch_size", type=positive_int, default=524288,
                   help="tokens per optimizer step over all ranks (gradient accumulation makes up the rest)")
    g = p.add_argument_group("optimization")
    g.add_argument("--embedding_lr", type=float, default=0.2, help="AdamW lr of the embedding")
    g.add_argument("--unembedding_lr", type=float, default=0.004, help="AdamW lr of lm_head")
    g.add_argument("--matrix_lr", type=float, default=0.02, help="Muon lr of the block matrices")
    g.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    g.add_argument("--grad_clip", type=float, default=1.0, help="max gradient norm; 0 = no clipping")
    g.add_argument("--warmup_ratio", type=float, default=0.0, help="fraction of steps of linear lr warmup")
    g.add_argument("--warmdown_ratio", type=float, default=0.2, help="fraction of steps of linear lr warmdown")
    g.add_argument("--final_lr_frac", type=float, default=0.0, help="lr at the end as a fraction of the peak")
    g = p.add_argument_group("evaluation, sampling, checkpoints")
    g.add_argument("--eval_every", type=int, default=250, help="steps between val bpb evals; -1 = never")
    g.add_argument("--eval_tokens", type=int, default=None, help="val tokens per eval (default: 20 x total_batch_size)")
    g.add_argument("--sample_every", type=int, default=2000, help="steps between printed samples; -1 = never")
    g.add_argument("--save_every", type=int, default=-1, help="steps between checkpoints; -1 = only at the end")
    g.add_argument("--resume_from_step", type=int, default=-1, help="continue from this saved step; -1 = fresh")
    args = p.parse_args(argv)

    if args.wandb and args.run != "dummy" and importlib.util.find_spec("wandb") is None:
        p.error("--wandb needs the wandb package: pip install wandb")
    for name in ("embedding_lr", "unembedding_lr", "matrix_lr", "weight_decay", "grad_clip"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    for name in ("warmup_ratio", "warmdown_ratio", "final_lr_frac"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            p.error(f"--{name} must be between 0 and 1, got {getattr(args, name)}")
    if args.warmup_ratio + args.warmdown_ratio > 1.0:
        p.error("--warmup_ratio + --warmdown_ratio must be at most 1")
    if args.num_iterations == 0 or args.num_iterations < -1:
        p.error(f"--num_iterations must be a positive number of steps or -1, got {args.num_iterations}")
    if args.num_iterations == -1 and args.target_flops <= 0 and args.target_param_data_ratio <= 0:
        p.error("set a horizon: --num_iterations, --target_flops or --target_param_data_ratio")
    if args.eval_tokens is not None and args.eval_tokens < 1:
        p.error(f"--eval_tokens must be positive, got {args.eval_tokens}")
    if args.resume_from_step < -1:
        p.error(f"--resume_from_step must be a saved step or -1, got {args.resume_from_step}")
    if args.peak_flops is not None and args.peak_flops <= 0:
        p.error(f"--peak_flops must be positive, got {args.peak_flops}")
    if args.model_tag is not None and (not args.model_tag or os.sep in args.model_tag or args.model_tag in (".", "..")):
        p.error(f"--model-tag must be a plain directory name, got {args.model_tag!r}")
    if args.device_type:
        try:
            autodetect_device_type(args.device_type)
        except ValueError as e:
            p.error(f"--device_type: {e}")
    return args


# ---------------------------------------------------------------------------------------------------------------
# the pieces of the recipe, each a plain function of its inputs

def pick_num_heads(n_embd, head_dim=128):
    """n_embd // head_dim heads when that divides evenly (every even depth); otherwise the head count whose
    (even, for rotary) head dimension is closest to `head_dim`."""
    candidates = [h for h in range(1, n_embd + 1) if n_embd % h == 0 and (n_embd // h) % 2 == 0]
    return min(candidates, key=lambda h: (abs(n_embd // h - head_dim), h))


def model_config_kwargs(depth, max_seq_len, vocab_size):
    n_embd = 64 * depth
    n_head = pick_num_heads(n_embd)
    return dict(sequence_len=max_seq_len, vocab_size=vocab_size, n_layer=depth, n_head=n_head,
                n_kv_head=n_head, n_embd=n_embd)


def grad_accum_steps(total_batch_size, device_batch_size, max_seq_len, world_size):
    """Micro-steps per optimizer step; the total must be a whole number of (rows x seq x ranks)."""
    tokens_per_micro_step = device_batch_size * max_seq_len * world_size
    suggestion = max(1, round(total_batch_size / tokens_per_micro_step)) * tokens_per_micro_step
    if total_batch_size % tokens_per_micro_step != 0:
        raise SystemExit(
            f"error: --total_batch_size={total_batch_size} is not a multiple of device_batch_size x max_seq_len x "
            f"ranks = {device_batch_size} x {max_seq_len} x {world_size} = {tokens_per_micro_step} tokens; "
            f"make it a multiple (e.g. {suggestion})")
    return total_batch_size // tokens_per_micro_step


def horizon(args, num_params, token_flops):
    """(num_iterations, how it was chosen)."""
    if args.num_iterations > 0:
        return args.num_iterations, "--num_iterations"
    if args.target_flops > 0:
        steps = round(args.target_flops / (token_flops * args.total_batch_size))
        return max(1, steps), f"--target_flops={args.target_flops:.3g}"
    tokens = args.target_param_data_ratio * num_params
    return max(1, round(tokens / args.total_batch_size)), f"--target_param_data_ratio={args.target_param_data_ratio:g}"




def available_memory_bytes():
    try:
        import psutil
        return psutil.virtual_memory().available
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def estimate_cpu_batch_size(config, num_params, max_rows, local_world_size):
    """The largest power of two <= max_rows whose fp32 training memory fits in half the available RAM.

    Per sequence ~4·T·(16·L·n_embd + 5·vocab) bytes of activations (on the safe side of what was measured on
    CPU: 60 MB at depth 4, T 512, vocab 4096 against 75 MB estimated), plus 16 bytes per parameter for the
    weights, gradients and optimizer moments. The processes of one machine share its RAM.
    """
    per_row = 4 * config.sequence_len * (16 * config.n_layer * config.n_embd + 5 * config.vocab_size)
    budget = available_memory_bytes() / 2 / local_world_size - 16 * num_params
    rows = 1
    while rows * 2 <= max_rows and rows * 2 * per_row <= budget:
        rows *= 2
    return rows, per_row, budget


def probe_cuda_batch_size(model, config, max_rows, device, autocast_ctx, num_params):
    """Try forward+backward at max_rows, halving on CUDA out-of-memory; the largest that fits wins.

    During the probe a block the size of the optimizer state (3 fp32 copies of the parameters, on the safe
    side of Muon's one and AdamW's two) is held, since the real run needs that memory too."""
    def fits(rows):
        reserve = torch.empty(3 * num_params, dtype=torch.float32, device=device)
        try:
            x = torch.randint(0, config.vocab_size, (rows, config.sequence_len), device=device)
            with autocast_ctx:
                loss = model(x, x)
            loss.backward()
            torch.cuda.synchronize(device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            del reserve
            model.zero_grad(set_to_none=True)

    rows = max_rows
    while rows >= 1:
        ok = fits(rows)
        torch.cuda.empty_cache()
        if ok:
            return rows
        rows //= 2
    raise SystemExit(f"error: not even --device_batch_size=1 of {config.sequence_len} tokens fits on {device}; "
                     f"use a smaller --depth or --max_seq_len")


def largest_power_of_two_dividing(n):
    rows = 1
    while n % (rows * 2) == 0:
        rows *= 2
    return rows




# torch.compile on cpu/mps pays only over a long enough run. On a 2-core AVX2 CPU (depth 4, seq 512, batch 8, 1.1 to
# 1.7 s per eager step) compiled steps measured 1.06x to 1.25x faster (0.1 to 0.35 s saved per step) and compiling
# costs ~45 s cold (20 s with inductor's on-disk cache warm; minutes on a loaded machine): it breaks even after
# 150 to 450 steps, 2e13 to 6e13 training FLOPs at 3.1e7 FLOPs per token. Compile is chosen from 1e14 (about 800
# such steps); cuda always compiles.
COMPILE_MIN_FLOPS = 1e14


def choose_compile(flag, device_type, training_flops):
    """--compile/--no-compile when given; otherwise on for cuda, and elsewhere when the run is long enough."""
    if flag is not None:
        return flag
    return device_type == "cuda" or training_flops >= COMPILE_MIN_FLOPS


def fastest_optimizers(optimizers, device_type, compiled, fuse_adamw=True):
    """[adamw, muon] from setup_optimizers, made fast: torch's fused AdamW kernel wherever it has one (cpu too;
    not for a learner's own AdamW, `fuse_adamw` False), Muon's Newton–Schulz torch.compile'd when the model is
    and the device is cuda (bf16 there, by Muon's default)."""
    adamw, muon = optimizers
    if hasattr(muon, "ns_compile"):
        muon.ns_compile = compiled and device_type == "cuda"
    return [with_fused_kernel(adamw) if fuse_adamw else adamw, muon]


def default_log_every(flag, device_type):
    """--log_every when given; otherwise every step on cpu (its loss is ready when the step returns, so reading
    it costs nothing and a learner sees every step) and every LOG_EVERY_ACCELERATOR steps on cuda/mps."""
    if flag is not None:
        return flag
    return 1 if device_type == "cpu" else LOG_EVERY_ACCELERATOR


def default_eval_tokens(total_batch_size, num_iterations, eval_every):
    """20 batches' worth, but at most a quarter of the tokens trained between two evaluations: an eval token
    costs about a third of a training token, so a short run spends under a tenth of its time evaluating."""
    between = min(eval_every, num_iterations) if eval_every > 0 else num_iterations
    return max(1, min(20 * total_batch_size, between * total_batch_size // 4))


def compile_warm_up(model, orig_model, batch, compute, evaluates):
    """Compile before step 0, so the cost is printed on its own rather than hidden in step 0's time or in the
    first evaluation's: one forward+backward on the first batch (gradients discarded) and, when the run
    `evaluates`, one forward as `evaluate` makes it (eval mode, no gradients, per-token losses), which torch.compile
    compiles as a second graph. Returns the seconds of each (the second None when there is no evaluation)."""
    x, y, _ = batch
    with Timer(compute) as train_timer:
        with compute.autocast_ctx:
            loss = model(x, y)
        loss.backward()
        orig_model.zero_grad(set_to_none=True)
    if not evaluates:
        return train_timer.seconds, None
    orig_model.eval()
    with Timer(compute) as eval_timer, torch.no_grad(), compute.autocast_ctx:
        model(x, y, loss_reduction="none")
    orig_model.train()
    return train_timer.seconds, eval_timer.seconds


def print_compile_time(train_s, eval_s, step):
    total = train_s + (eval_s or 0.0)
    parts = f"training graph {train_s:.1f}s, evaluation graph {eval_s:.1f}s; " if eval_s is not None else ""
    print0(f"torch.compile: {total:.1f}s compiling before step {step} ({parts}not counted in any step's time)",
           flush=True)


# ---------------------------------------------------------------------------------------------------------------
# the run, in the order it happens

@dataclasses.dataclass
class Plan:
    """The numbers fixed before the first step."""
    rows: int  # B: rows per forward/backward per rank
    seq_len: int  # T
    accum_steps: int
    num_iterations: int
    horizon_from: str
    eval_steps: int
    num_params: int
    flops_per_token: float
    peak_flops: float | None


@dataclasses.dataclass
class Run:
    """Everything the loop reads but never changes."""
    args: argparse.Namespace
    compute: Compute
    tokenizer: object
    token_bytes: torch.Tensor
    config: object
    orig_model: torch.nn.Module  # the model itself: state dicts, optimizers, sampling
    model: torch.nn.Module  # what forward/backward call: orig_model, or its torch.compile wrapper
    optimizers: list
    plan: Plan
    data_source: str
    model_tag: str
    checkpoint_dir: str
    metrics_path: str
    code: LearnerCode  # the schedule, step and loaders: the reference's, or the learner's files
    log_every: int
    wandb_run: object = None


@dataclasses.dataclass
class LoopState:
    """What changes from step to step, and what a checkpoint stores to resume exactly."""
    step: int = 0
    consumed: dict | None = None  # the loader state after the last batch trained on
    smooth_loss: float = 0.0
    elapsed: float = 0.0
    min_val_bpb: float | None = None
    val_bpb: float | None = None
    # steps trained since the last progress line: (step, loss on the device, lr multiplier), and when they began
    pending: list = dataclasses.field(default_factory=list)
    pending_start: float = 0.0
    timed_s: float = 0.0  # steps after a run's first (which pays for warm-up): their seconds and count, for the ETA
    timed_steps: int = 0


def check_data(choice):
    """The data source to train on; fail now, with the way out, rather than after the model is built."""
    data_source = dataset.resolve_source(choice)
    if data_source == "shards":
        try:
            dataset.split_files("train"), dataset.split_files("val")
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
    return data_source


def build_model(args, vocab_size, device):
    """(config, model) from the reference file or the learner's, initialised on `device`."""
    module = model_sources.load_model_module(args.model)
    config = module.GPTConfig(**model_config_kwargs(args.depth, args.max_seq_len, vocab_size))
    with torch.device(device):
        model = module.GPT(config)
    model.init_weights()
    return config, model


def load_resume_checkpoint(args, checkpoint_dir, model, config, compute):
    """Load the weights of `--resume_from_step` into `model`; return (optimizer states, meta) for later."""
    step = args.resume_from_step
    if not os.path.exists(model_path(checkpoint_dir, step)):
        try:
            hint = f"the latest saved step is {find_last_step(checkpoint_dir)}"
        except CheckpointError:
            hint = "there are no checkpoints for this --model-tag/--depth yet"
        raise SystemExit(f"error: --resume_from_step={step}: no checkpoint of that step in {checkpoint_dir} ({hint})")
    model_data, optimizer_data, meta = load_checkpoint(checkpoint_dir, step, compute.device,
                                                       load_optimizer=True, rank=compute.rank)
    if meta["model_config"] != config_dict(config):
        raise SystemExit(f"error: step {step} in {checkpoint_dir} is a model with {meta['model_config']}, but these "
                         f"flags build {config_dict(config)}; pass the same --depth/--max_seq_len as the original run")
    saved_source = meta.get("model_source", model_sources.REFERENCE)
    if saved_source != model_sources.canonical(args.model):
        print0(f"note: step {step} was trained with {model_sources.describe(saved_source)}; "
               f"continuing with {model_sources.describe(args.model)}")
    if compute.device_type != "cuda":
        model_data = {k: v.float() if v.dtype == torch.bfloat16 else v for k, v in model_data.items()}
    try:
        model.load_state_dict(model_data, strict=True)
    except RuntimeError as e:
        raise SystemExit(f"error: step {step} in {checkpoint_dir} does not fit "
                         f"{model_sources.describe(args.model)}: {e}") from None
    saved = meta.get("run_args", {})
    if args.device_batch_size == "auto" and isinstance(saved.get("device_batch_size"), int):
        args.device_batch_size = saved["device_batch_size"]
        print0(f"resume: --device_batch_size=auto takes the saved run's {args.device_batch_size}")
    for name in ("device_batch_size", "total_batch_size"):
        if name in saved and saved[name] != getattr(args, name):
            raise SystemExit(f"error: step {step} was trained with --{name}={saved[name]}; "
                             f"resume with the same value (the data position depends on it)")
    return optimizer_data, meta


def auto_batch_size(args, compute, model, config, num_params):
    """`--device_batch_size=auto`: the rows per forward/backward that fit, the same on every rank."""
    world_size = compute.world_size
    grad_accum_steps(args.total_batch_size, 1, args.max_seq_len, world_size)  # clear error if no size can work
    cap = largest_power_of_two_dividing(args.total_batch_size // (args.max_seq_len * world_size))
    if compute.device_type == "cuda":
        rows = probe_cuda_batch_size(model, config, cap, compute.device, compute.autocast_ctx, num_params)
        how = f"largest power of two <= {cap} whose forward+backward fit on {compute.device}"
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        rows, per_row, budget = estimate_cpu_batch_size(config, num_params, cap, local_world)
        how = (f"estimated {per_row / 2**20:.0f} MiB of activations per row against a budget of "
               f"{max(budget, 0) / 2**30:.1f} GiB (half the available RAM)")
    if compute.ddp:  # every rank must use the same size
        t = torch.tensor([rows], device=compute.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        rows = int(t.item())
    print0(f"--device_batch_size=auto -> {rows} ({how})")
    return rows


def make_plan(args, compute, model, config):
    """The batch (rows, accumulation) and the horizon (steps) of this run."""
    num_params = sum(p.numel() for p in model.parameters())
    token_flops = flops_per_token(model, config)
    if args.device_batch_size == "auto":
        args.device_batch_size = auto_batch_size(args, compute, model, config, num_params)
    B, T, world_size = args.device_batch_size, args.max_seq_len, compute.world_size
    accum_steps = grad_accum_steps(args.total_batch_size, B, T, world_size)
    num_iterations, horizon_from = horizon(args, num_params, token_flops)
    eval_tokens = args.eval_tokens or default_eval_tokens(args.total_batch_size, num_iterations, args.eval_every)
    eval_steps = max(1, eval_tokens // (B * T * world_size))
    peak = peak_flops_per_device(compute.device_type, args.peak_flops)
    return Plan(B, T, accum_steps, num_iterations, horizon_from, eval_steps, num_params, token_flops, peak)


def print_plan(args, compute, config, plan, data_source, checkpoint_dir, code, log_every):
    total_tokens = plan.num_iterations * args.total_batch_size
    print0(f"model: {model_sources.describe(args.model)}")
    if learner_code.describe(code):
        print0(learner_code.describe(code))
    print0(f"config: {config_dict(config)}")
    print0(f"parameters: {plan.num_params:,} | FLOPs per token: {plan.flops_per_token:.3e}")
    print0(f"device: {compute.device} x {compute.world_size} rank(s) | dtype: {compute_dtype(compute.device_type)} "
           f"| compile: {compute.use_compile}")
    print0(f"batch: {plan.rows} rows x {plan.seq_len} tokens x {compute.world_size} rank(s) x {plan.accum_steps} "
           f"accumulation step(s) = {args.total_batch_size:,} tokens per step")
    print0(f"horizon: {plan.num_iterations:,} steps ({plan.horizon_from}) = {total_tokens:,} tokens, "
           f"{total_tokens / plan.num_params:.2f} tokens per parameter, "
           f"{plan.flops_per_token * total_tokens:.3e} FLOPs")
    print0(f"data: {data_source} | checkpoints and metrics: {checkpoint_dir} | a progress line every "
           f"{log_every} step(s)")


def restore_loop_state(resume, optimizers, compute, num_iterations, checkpoint_dir):
    """Optimizer states and the loop's counters exactly where the checkpoint left off."""
    optimizer_data, meta = resume
    for opt, state in zip(optimizers, optimizer_data):
        opt.load_state_dict(state)
    start_step = meta["step"]
    loop_meta = meta.get("loop_state", {})
    consumed = None
    states = loop_meta.get("dataloader_state")
    if states is not None:
        if len(states) != compute.world_size:
            raise SystemExit(f"error: step {start_step} was saved by {len(states)} rank(s); resume it with "
                             f"the same number (torchrun --nproc_per_node={len(states)})")
        consumed = states[compute.rank]
    if start_step > num_iterations:
        raise SystemExit(f"error: step {start_step} is past the end of this run ({num_iterations} steps); "
                         f"raise --num_iterations")
    print0(f"resumed from step {start_step} of {checkpoint_dir}")
    return LoopState(step=start_step, consumed=consumed, smooth_loss=loop_meta.get("smooth_loss", 0.0),
                     elapsed=loop_meta.get("elapsed_s", 0.0), min_val_bpb=loop_meta.get("min_val_bpb"))


def start_metrics(checkpoint_dir, metrics_path, resumed_step):
    """Rank 0: a fresh run starts a fresh metrics curve; a resumed one keeps the records before its step."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    if resumed_step is not None:
        truncate_metrics(metrics_path, resumed_step)
        return
    try:
        print0(f"note: {checkpoint_dir} holds checkpoints up to step {find_last_step(checkpoint_dir)} of an "
               f"earlier run; this fresh run replaces its metrics and overwrites steps as it saves them")
    except CheckpointError:
        pass
    open(metrics_path, "w").close()


def start_wandb(args, master, num_iterations):
    """A wandb run, only when asked for, named, and on rank 0."""
    if args.wandb and args.run == "dummy":
        print0("note: --wandb ignored for --run=dummy; give the run a name to log it")
    if not (args.wandb and args.run != "dummy" and master):
        return None
    try:
        import wandb
    except ImportError:
        raise SystemExit("error: --wandb needs the wandb package (pip install wandb)") from None
    return wandb.init(project="nanochat", name=args.run, config={**vars(args), "num_iterations": num_iterations})


def log_record(run, record, step):
    """Rank 0: append to metrics.jsonl (and wandb when on)."""
    if not run.compute.master:
        return
    append_jsonl(run.metrics_path, record)
    if run.wandb_run:
        run.wandb_run.log(record, step=step)


def save(run, loop, step):
    """A checkpoint of `step`: weights, every rank's optimizer state and loader position, the loop's counters."""
    states = [loop.consumed]
    if run.compute.ddp:
        states = [None] * run.compute.world_size
        dist.all_gather_object(states, loop.consumed)
    meta = {
        "model_config": config_dict(run.config),
        "step": step,
        "model_source": model_sources.canonical(run.args.model),
        "run_args": {**vars(run.args), "num_iterations": run.plan.num_iterations},
        "val_bpb": loop.val_bpb,
        "loop_state": {"dataloader_state": states if loop.consumed is not None else None,
                       "smooth_loss": loop.smooth_loss, "elapsed_s": loop.elapsed, "min_val_bpb": loop.min_val_bpb},
    }
    save_checkpoint(run.checkpoint_dir, step, run.orig_model.state_dict(),
                    [opt.state_dict() for opt in run.optimizers], meta, rank=run.compute.rank)
    print0(f"saved step {step} to {run.checkpoint_dir}")


def evaluate(run, loop, step):
    """Validation bits per byte over `eval_steps` batches (all ranks); recorded as this step's val_bpb. A compiled
    run evaluates with the compiled model, whose evaluation graph `compile_warm_up` compiled before step 0."""
    plan, compute = run.plan, run.compute
    val_loader = run.code.dataloader.tokenizing_distributed_data_loader(plan.rows, plan.seq_len, "val",
                                                                        device=compute.device, source=run.data_source)
    started = time.perf_counter()
    run.orig_model.eval()
    with Prefetcher(val_loader, device=compute.device) as batches, compute.autocast_ctx:
        bpb = evaluate_bpb(run.model, batches, plan.eval_steps, run.token_bytes)
    run.orig_model.train()
    loop.val_bpb = bpb
    loop.min_val_bpb = bpb if loop.min_val_bpb is None else min(loop.min_val_bpb, bpb)
    print0(f"step {step:05d} | val bpb {bpb:.4f} ({plan.eval_steps * plan.rows * plan.seq_len * compute.world_size:,} "
           f"tokens, {time.perf_counter() - started:.1f}s)")
    log_record(run, {"step": step, "val_bpb": bpb, "elapsed_s": loop.elapsed}, step)


def sample(run, step):
    """A few greedy continuations of fixed prompts (rank 0)."""
    print0(f"step {step:05d} | samples (greedy):")
    tokenizer = run.tokenizer
    engine = Engine(run.orig_model, tokenizer)
    run.orig_model.eval()
    for prompt in SAMPLE_PROMPTS:
        tokens = tokenizer(prompt, prepend=tokenizer.get_bos_token_id())
        with run.compute.autocast_ctx:
            results, _ = engine.generate_batch(tokens, num_samples=1, max_tokens=16, temperature=0)
        print0(f"  {tokenizer.decode(results[0][1:])!r}")
    run.orig_model.train()


def train_step(run, loop, loader, batch):
    """One optimizer step at `loop.step`: accumulate, clip, schedule, step; returns the next prefetched batch.

    Nothing here waits for the device: the step's loss stays a device tensor in `loop.pending` until
    `report_steps` reads the pending losses all at once."""
    args, plan, code = run.args, run.plan, run.code.training
    if not loop.pending:
        loop.pending_start = time.perf_counter()
    step_loss, loop.consumed, batch = code.accumulate_gradients(run.model, loader, batch, plan.accum_steps,
                                                                run.compute.autocast_ctx)
    lrm = code.lr_multiplier(loop.step, plan.num_iterations, args.warmup_ratio, args.warmdown_ratio,
                             args.final_lr_frac)
    code.optimizer_step(run.orig_model, run.optimizers, run.optimizers[1], lrm, code.muon_momentum(loop.step),
                        args.grad_clip)
    loop.pending.append((loop.step, step_loss, lrm))
    loop.step += 1
    return batch


def report_steps(run, loop, first_of_run):
    """Wait for the device once, fold the pending steps' losses into the smoothed loss, then print and record
    one line for the last of them: its own loss, the smoothed loss, and the mean step time since the last line
    (dt, tok/sec, MFU). `first_of_run`: the pending step is the run's first, whose warm-up the ETA leaves out."""
    plan, pending = run.plan, loop.pending
    losses = means_over_ranks([loss for _, loss, _ in pending], run.compute)  # waits for the device
    run.compute.synchronize()
    seconds = time.perf_counter() - loop.pending_start
    beta = 0.9
    for (step, _, _), loss in zip(pending, losses):
        if not math.isfinite(loss):
            raise SystemExit(f"error: the training loss became {loss} at step {step}; lower the learning rates "
                             f"or check the model (last checkpoint: see {run.checkpoint_dir})")
        loop.smooth_loss = beta * loop.smooth_loss + (1 - beta) * loss
    step, _, lrm = pending[-1]
    done, dt = step + 1, seconds / len(pending)
    loop.elapsed += seconds
    if not first_of_run:
        loop.timed_s, loop.timed_steps = loop.timed_s + seconds, loop.timed_steps + len(pending)
    loop.pending = []
    debiased = loop.smooth_loss / (1 - beta ** done)
    tok_per_sec = run.args.total_batch_size / dt
    mfu = plan.flops_per_token * tok_per_sec / (plan.peak_flops * run.compute.world_size) if plan.peak_flops else None
    eta = (loop.timed_s / loop.timed_steps if loop.timed_steps else dt) * (plan.num_iterations - done)
    mfu_text = f"{100 * mfu:.2f}%" if mfu is not None else "n/a"
    print0(f"step {step:05d}/{plan.num_iterations:05d} ({100 * done / plan.num_iterations:.1f}%) | "
           f"loss {losses[-1]:.6f} (smooth {debiased:.4f}) | lrm {lrm:.2f} | dt {dt * 1000:.1f}ms | "
           f"tok/sec {tok_per_sec:,.0f} | mfu {mfu_text} | eta {format_duration(eta)} | "
           f"elapsed {format_duration(loop.elapsed)}", flush=True)
    log_record(run, {"step": step, "loss": losses[-1], "loss_smooth": debiased, "lr_mult": lrm,
                     "tok_per_sec": tok_per_sec, "mfu": mfu, "dt_ms": dt * 1000, "eta_s": eta,
                     "elapsed_s": loop.elapsed, "total_tokens": done * run.args.total_batch_size}, step)


def training_loop(run, loop, loader, batch):
    """Step until the horizon (or a stop request): save, evaluate and sample when due, then train one step.

    A progress line comes after the run's first step, after every `log_every`-th step, and before anything
    else that waits for the device (a save, an evaluation, samples, the end)."""
    args, compute, start_step = run.args, run.compute, loop.step
    stop = StopFlag()
    stop.install()
    while True:
        step = loop.step
        last_step = step == run.plan.num_iterations
        # all ranks stop together or not at all; under torchrun asking them waits for the device, so it is
        # asked only at a progress line (a single process reads its own flag every step)
        stop_now = any_rank(stop.requested, compute) if not (compute.ddp and loop.pending) else False
        save_now = last_step or stop_now or (args.save_every > 0 and step % args.save_every == 0 and step != start_step)
        eval_now = args.eval_every > 0 and (last_step or step % args.eval_every == 0)
        sample_now = args.sample_every > 0 and (last_step or (step % args.sample_every == 0 and step > 0))
        if loop.pending and (save_now or eval_now or sample_now):  # the same on every rank
            report_steps(run, loop, first_of_run=False)
        # save first, then evaluate: a crash in an eval or sample must never cost the trained weights
        if save_now:
            save(run, loop, step)
        if stop_now and not last_step:
            print0(f"stopped at step {step}; continue with --resume_from_step={step} (and the same flags)")
            return
        if eval_now:
            evaluate(run, loop, step)
        if sample_now and compute.master:
            sample(run, step)
        if last_step:
            return
        batch = train_step(run, loop, loader, batch)
        if step == start_step or loop.step % run.log_every == 0:
            report_steps(run, loop, first_of_run=step == start_step)


def print_summary(run, loop):
    print0(f"done: {loop.step} steps, {format_duration(loop.elapsed)} of training"
           + (f", min val bpb {loop.min_val_bpb:.4f}" if loop.min_val_bpb is not None else ""))
    if run.compute.device_type == "cuda":
        print0(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    model = run.args.model
    model_flag = "" if model_sources.is_reference(model) else f" --model {model_sources.canonical(model)}"
    print0(f"next: python -m nanochat.scripts.base_loss --model-tag {run.model_tag}{model_flag}\n"
           f"      python -m nanochat.scripts.chat_cli -i base -g {run.model_tag}{model_flag} "
           f"-p \"The capital of France is\"")


def log_report(run, loop):
    """This run's section of the run report (nanochat.report; rank 0)."""
    from nanochat import report

    plan = run.plan
    tokens = loop.step * run.args.total_batch_size
    tok_per_sec = tokens / loop.elapsed if loop.elapsed > 0 else None  # elapsed counts resumed steps' time too
    mfu = plan.flops_per_token * tok_per_sec / (plan.peak_flops * run.compute.world_size) \
        if plan.peak_flops and tok_per_sec else None
    report.log_section("base", "Base model training", {
        "depth": run.args.depth, "parameters": plan.num_params, "steps": loop.step, "tokens": tokens,
        "tok_per_sec": tok_per_sec, "mfu": mfu, "train_time_s": loop.elapsed, "min_val_bpb": loop.min_val_bpb,
        "model_source": model_sources.canonical(run.args.model)})


def make_optimizers(args, orig_model, code, compute):
    """The model's [adamw, muon] with this run's learning rates, from the learner's optimizer files where
    --optimizer named them, made as fast as the device allows."""
    optimizers = orig_model.setup_optimizers(unembedding_lr=args.unembedding_lr, embedding_lr=args.embedding_lr,
                                             matrix_lr=args.matrix_lr, weight_decay=args.weight_decay)
    optimizers = learner_code.with_learner_optimizers(optimizers, code, compute.ddp)
    return fastest_optimizers(optimizers, compute.device_type, compute.use_compile, fuse_adamw=code.adamw is None)


def train(args):
    code = learner_code.load(args)  # a learner file that cannot run fails here, before anything is built
    compute = setup_compute(args.device_type, args.compile)
    data_source = check_data(args.data)
    tokenizer = get_tokenizer()
    token_bytes = get_token_bytes(device=compute.device)
    config, orig_model = build_model(args, tokenizer.get_vocab_size(), compute.device)
    model_tag = args.model_tag or f"d{args.depth}"
    checkpoint_dir = os.path.join(get_base_dir(), "base_checkpoints", model_tag)
    metrics_path = os.path.join(checkpoint_dir, "metrics.jsonl")

    # resume: the weights now (the batch size may come from the checkpoint), the optimizer state once it exists
    resume = None
    if args.resume_from_step >= 0:
        resume = load_resume_checkpoint(args, checkpoint_dir, orig_model, config, compute)
    plan = make_plan(args, compute, orig_model, config)
    training_flops = plan.flops_per_token * plan.num_iterations * args.total_batch_size
    compute.use_compile = choose_compile(args.compile, compute.device_type, training_flops)
    log_every = default_log_every(args.log_every, compute.device_type)
    print_plan(args, compute, config, plan, data_source, checkpoint_dir, code, log_every)

    optimizers = make_optimizers(args, orig_model, code, compute)
    model = torch.compile(orig_model, dynamic=False) if compute.use_compile else orig_model
    loop = LoopState()
    if resume is not None:
        loop = restore_loop_state(resume, optimizers, compute, plan.num_iterations, checkpoint_dir)
        del resume
    if compute.master:
        start_metrics(checkpoint_dir, metrics_path, loop.step if args.resume_from_step >= 0 else None)

    wandb_run = start_wandb(args, compute.master, plan.num_iterations)
    run = Run(args, compute, tokenizer, token_bytes, config, orig_model, model, optimizers, plan, data_source,
              model_tag, checkpoint_dir, metrics_path, code, log_every, wandb_run)
    loader = code.dataloader.tokenizing_distributed_data_loader_with_state(
        plan.rows, plan.seq_len, "train", device=compute.device, resume_state_dict=loop.consumed, source=data_source)
    with Prefetcher(loader, device=compute.device) as batches:  # the next batches are cut while a step runs
        batch = next(batches)  # (inputs, targets, loader state after them)
        if compute.use_compile and loop.step < plan.num_iterations:
            print_compile_time(*compile_warm_up(model, orig_model, batch, compute, args.eval_every > 0), loop.step)
        training_loop(run, loop, batches, batch)
    print_summary(run, loop)
    log_report(run, loop)
    if wandb_run:
        wandb_run.finish()


def main(argv=None):
    args = parse_args(argv)
    with process_group_exit():
        try:
            train(args)
        except (CheckpointError, LearnerFileError, dataset.DataError) as e:
            raise SystemExit(f"error: {e}") from None
        except KeyboardInterrupt:
            raise SystemExit("interrupted") from None
        except Exception as e:
            # raised inside a learner's file (a TODO still to write, a crash): where it happened, not a traceback
            # (a collective that timed out is process_group_exit's to explain, wherever it waited)
            where = model_sources.learner_failure(e)
            if where is None or from_a_collective(e):
                raise
            raise SystemExit(f"error: your code stopped training at {where}") from None


if __name__ == "__main__":
    main()

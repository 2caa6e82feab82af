"""Pretrain the base model: next-token prediction on web text (or the embedded corpus), with Muon + AdamW.

On a laptop (CPU, offline, a few seconds; the embedded corpus and tokenizer are used when nothing is downloaded):

    python -m nanochat.scripts.base_train --depth=4 --max_seq_len=512 --device_batch_size=1 \
        --total_batch_size=512 --num_iterations=1

On a GPU node (one process per GPU; gradients are averaged by the distributed optimizers):

    torchrun --standalone --nproc_per_node=8 -m nanochat.scripts.base_train -- --depth=20 --run=d20

What one run does, top to bottom:
1. build the model from `--depth` (n_layer = depth, n_embd = 64·depth, head dim 128) on the device,
   from the reference `nanochat.gpt` or the learner's file given with `--model`;
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

Progress is printed every step and appended as JSON lines to `<checkpoint dir>/metrics.jsonl`:
    {"step", "loss", "loss_smooth", "lr_mult", "tok_per_sec", "mfu", "dt_ms", "eta_s", "elapsed_s",
     "total_tokens"}   after each training step (loss = this step's mean training loss)
    {"step", "val_bpb", "elapsed_s"}   after each evaluation

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
import json
import math
import os
import signal
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist

from nanochat import dataset, model_source as model_sources
from nanochat.checkpoint_manager import CheckpointError, find_last_step, load_checkpoint, model_path, save_checkpoint
from nanochat.common import autodetect_device_type, compute_cleanup, compute_dtype, compute_init, get_base_dir, print0
from nanochat.dataloader import tokenizing_distributed_data_loader, tokenizing_distributed_data_loader_with_state
from nanochat.engine import Engine
from nanochat.loss_eval import evaluate_bpb
from nanochat.model_source import ModelSourceError
from nanochat.tokenizer import get_token_bytes, get_tokenizer

SAMPLE_PROMPTS = [
    "The capital of France is",
    "A list in Python is",
    "The opposite of hot is",
    "If yesterday was Friday, then tomorrow will be",
]
MOMENTUM_WARMUP_STEPS = 300  # Muon momentum goes 0.85 -> 0.95 over these steps
# bf16 dense peak FLOP/s per GPU, matched against torch.cuda.get_device_name(); first match wins
GPU_PEAK_FLOPS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]


# ---------------------------------------------------------------------------------------------------------------
# command line

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default in (None, "", False):
            return action.help
        return super()._get_help_string(action)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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
    g.add_argument("--model_tag", default=None, help="checkpoint directory name (default: d<depth>)")
    g.add_argument("--source", default="auto", choices=["auto", "shards", "embedded"],
                   help="training text: downloaded parquet shards, the embedded offline corpus, or auto "
                        "(shards when any are downloaded)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for cuda, off elsewhere)")
    g.add_argument("--peak_flops", type=float, default=None,
                   help="peak FLOP/s per device for MFU (default: known GPUs only; MFU is null otherwise)")
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
    g.add_argument("--core_metric_every", type=int, default=-1,
                   help="CORE metric every N steps; -1 = off (CORE is not part of this build yet)")
    g.add_argument("--sample_every", type=int, default=2000, help="steps between printed samples; -1 = never")
    g.add_argument("--save_every", type=int, default=-1, help="steps between checkpoints; -1 = only at the end")
    g.add_argument("--resume_from_step", type=int, default=-1, help="continue from this saved step; -1 = fresh")
    args = p.parse_args(argv)

    if args.wandb and args.run != "dummy" and importlib.util.find_spec("wandb") is None:
        p.error("--wandb needs the wandb package: pip install wandb")
    if args.core_metric_every > 0:
        p.error("CORE evaluation is not part of this build yet; leave --core_metric_every at -1")
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
        p.error(f"--model_tag must be a plain directory name, got {args.model_tag!r}")
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


def lr_multiplier(step, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
    """Linear warmup from 0, flat at 1, linear warmdown towards `final_lr_frac` over the last steps."""
    warmup = round(warmup_ratio * num_iterations)
    warmdown = round(warmdown_ratio * num_iterations)
    if step < warmup:
        return (step + 1) / warmup
    if step <= num_iterations - warmdown:
        return 1.0
    progress = (num_iterations - step) / warmdown  # 1 at the start of the warmdown, -> 0 at the end
    return progress + (1 - progress) * final_lr_frac


def muon_momentum(step):
    frac = min(step / MOMENTUM_WARMUP_STEPS, 1.0)
    return (1 - frac) * 0.85 + frac * 0.95


def horizon(args, num_params, flops_per_token):
    """(num_iterations, how it was chosen)."""
    if args.num_iterations > 0:
        return args.num_iterations, "--num_iterations"
    if args.target_flops > 0:
        steps = round(args.target_flops / (flops_per_token * args.total_batch_size))
        return max(1, steps), f"--target_flops={args.target_flops:.3g}"
    tokens = args.target_param_data_ratio * num_params
    return max(1, round(tokens / args.total_batch_size)), f"--target_param_data_ratio={args.target_param_data_ratio:g}"


def flops_per_token(model, config):
    """The model's own estimate_flops(); a learner file that has not written it yet gets the same formula here."""
    try:
        return model.estimate_flops()
    except (NotImplementedError, AttributeError):
        nparams = sum(p.numel() for p in model.parameters())
        nembd = config.vocab_size * config.n_embd
        head_dim = config.n_embd // config.n_head
        return 6 * (nparams - nembd) + 12 * config.n_layer * config.n_head * head_dim * config.sequence_len


def peak_flops_per_device(device_type, override):
    if override:
        return override
    if device_type == "cuda":
        name = torch.cuda.get_device_name()
        for key, peak in GPU_PEAK_FLOPS:
            if key in name:
                return peak
    return None


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


def config_dict(config):
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))


def append_jsonl(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path, last_step):
    """On resume, keep the records up to the resumed step so the file holds one unbroken curve."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            # train records of step s come from training step s; the resumed run redoes step `last_step` and
            # its eval (the checkpoint of step s is saved before step s's eval)
            if isinstance(record, dict) and record.get("step", math.inf) < last_step:
                kept.append(line)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)


class StopFlag:
    """First Ctrl-C (or SIGTERM, as a batch scheduler sends before it kills a job): finish the step, save, exit.
    A second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def install(self):
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print0(f"\n{name}: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)", flush=True)


def format_duration(seconds):
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


# ---------------------------------------------------------------------------------------------------------------
# the run

def train(args):
    ddp, rank, local_rank, world_size, device = compute_init(args.device_type or None)
    device_type = device.type
    master = rank == 0
    autocast_ctx = torch.amp.autocast(device_type="cuda", dtype=compute_dtype(device_type)) \
        if device_type == "cuda" else nullcontext()
    synchronize = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device_type, lambda: None)
    use_compile = device_type == "cuda" if args.compile is None else args.compile

    # the data: fail now, with the way out, rather than after the model is built
    data_source = dataset.resolve_source(args.source)
    if data_source == "shards":
        try:
            dataset.split_files("train"), dataset.split_files("val")
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None

    tokenizer = get_tokenizer()
    token_bytes = get_token_bytes(device=device)
    vocab_size = tokenizer.get_vocab_size()

    # the model, from the reference file or the learner's
    module = model_sources.load_model_module(args.model)
    config = module.GPTConfig(**model_config_kwargs(args.depth, args.max_seq_len, vocab_size))
    with torch.device(device):
        orig_model = module.GPT(config)
    orig_model.init_weights()
    num_params = sum(p.numel() for p in orig_model.parameters())
    num_flops_per_token = flops_per_token(orig_model, config)

    model_tag = args.model_tag or f"d{args.depth}"
    checkpoint_dir = os.path.join(get_base_dir(), "base_checkpoints", model_tag)
    metrics_path = os.path.join(checkpoint_dir, "metrics.jsonl")

    # resume: weights now, optimizer and loader state once they exist
    resume = None
    if args.resume_from_step >= 0:
        if not os.path.exists(model_path(checkpoint_dir, args.resume_from_step)):
            try:
                hint = f"the latest saved step is {find_last_step(checkpoint_dir)}"
            except CheckpointError:
                hint = "there are no checkpoints for this --model_tag/--depth yet"
            raise SystemExit(f"error: --resume_from_step={args.resume_from_step}: no checkpoint of that step in "
                             f"{checkpoint_dir} ({hint})")
        model_data, optimizer_data, meta = load_checkpoint(checkpoint_dir, args.resume_from_step, device,
                                                           load_optimizer=True, rank=rank)
        if meta["model_config"] != config_dict(config):
            raise SystemExit(f"error: step {args.resume_from_step} in {checkpoint_dir} is a model with "
                             f"{meta['model_config']}, but these flags build {config_dict(config)}; "
                             f"pass the same --depth/--max_seq_len as the original run")
        saved_source = meta.get("model_source", model_sources.REFERENCE)
        if saved_source != model_sources.canonical(args.model):
            print0(f"note: step {args.resume_from_step} was trained with {model_sources.describe(saved_source)}; "
                   f"continuing with {model_sources.describe(args.model)}")
        if device_type != "cuda":
            model_data = {k: v.float() if v.dtype == torch.bfloat16 else v for k, v in model_data.items()}
        try:
            orig_model.load_state_dict(model_data, strict=True)
        except RuntimeError as e:
            raise SystemExit(f"error: step {args.resume_from_step} in {checkpoint_dir} does not fit "
                             f"{model_sources.describe(args.model)}: {e}") from None
        del model_data
        resume = (optimizer_data, meta)
        saved = meta.get("run_args", {})
        if args.device_batch_size == "auto" and isinstance(saved.get("device_batch_size"), int):
            args.device_batch_size = saved["device_batch_size"]
            print0(f"resume: --device_batch_size=auto takes the saved run's {args.device_batch_size}")
        for name in ("device_batch_size", "total_batch_size"):
            if name in saved and saved[name] != getattr(args, name):
                raise SystemExit(f"error: step {args.resume_from_step} was trained with --{name}={saved[name]}; "
                                 f"resume with the same value (the data position depends on it)")

    # the batch: rows per forward/backward, then gradient accumulation up to the total
    if args.device_batch_size == "auto":
        grad_accum_steps(args.total_batch_size, 1, args.max_seq_len, world_size)  # clear error if no size can work
        cap = largest_power_of_two_dividing(args.total_batch_size // (args.max_seq_len * world_size))
        if device_type == "cuda":
            rows = probe_cuda_batch_size(orig_model, config, cap, device, autocast_ctx, num_params)
            how = f"largest power of two <= {cap} whose forward+backward fit on {device}"
        else:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            rows, per_row, budget = estimate_cpu_batch_size(config, num_params, cap, local_world)
            how = (f"estimated {per_row / 2**20:.0f} MiB of activations per row against a budget of "
                   f"{max(budget, 0) / 2**30:.1f} GiB (half the available RAM)")
        if ddp:  # every rank must use the same size
            t = torch.tensor([rows], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            rows = int(t.item())
        args.device_batch_size = rows
        print0(f"--device_batch_size=auto -> {rows} ({how})")
    B, T = args.device_batch_size, args.max_seq_len
    accum_steps = grad_accum_steps(args.total_batch_size, B, T, world_size)

    num_iterations, horizon_from = horizon(args, num_params, num_flops_per_token)
    total_tokens_planned = num_iterations * args.total_batch_size
    eval_tokens = args.eval_tokens or 20 * args.total_batch_size
    eval_steps = max(1, eval_tokens // (B * T * world_size))
    peak = peak_flops_per_device(device_type, args.peak_flops)

    print0(f"model: {model_sources.describe(args.model)}")
    print0(f"config: {config_dict(config)}")
    print0(f"parameters: {num_params:,} | FLOPs per token: {num_flops_per_token:.3e}")
    print0(f"device: {device} x {world_size} rank(s) | dtype: {compute_dtype(device_type)} | compile: {use_compile}")
    print0(f"batch: {B} rows x {T} tokens x {world_size} rank(s) x {accum_steps} accumulation step(s) "
           f"= {args.total_batch_size:,} tokens per step")
    print0(f"horizon: {num_iterations:,} steps ({horizon_from}) = {total_tokens_planned:,} tokens, "
           f"{total_tokens_planned / num_params:.2f} tokens per parameter, "
           f"{num_flops_per_token * total_tokens_planned:.3e} FLOPs")
    print0(f"data: {data_source} | checkpoints and metrics: {checkpoint_dir}")

    optimizers = orig_model.setup_optimizers(unembedding_lr=args.unembedding_lr, embedding_lr=args.embedding_lr,
                                             matrix_lr=args.matrix_lr, weight_decay=args.weight_decay)
    adamw_optimizer, muon_optimizer = optimizers
    model = torch.compile(orig_model, dynamic=False) if use_compile else orig_model

    # loop state: fresh, or exactly where the checkpoint left off
    start_step = 0
    loader_state = None
    smooth_loss = 0.0
    elapsed = 0.0
    min_val_bpb = None
    if resume is not None:
        optimizer_data, meta = resume
        for opt, state in zip(optimizers, optimizer_data):
            opt.load_state_dict(state)
        del optimizer_data
        start_step = meta["step"]
        loop = meta.get("loop_state", {})
        states = loop.get("dataloader_state")
        if states is not None:
            if len(states) != world_size:
                raise SystemExit(f"error: step {start_step} was saved by {len(states)} rank(s); resume it with "
                                 f"the same number (torchrun --nproc_per_node={len(states)})")
            loader_state = states[rank]
        smooth_loss = loop.get("smooth_loss", 0.0)
        elapsed = loop.get("elapsed_s", 0.0)
        min_val_bpb = loop.get("min_val_bpb")
        if start_step > num_iterations:
            raise SystemExit(f"error: step {start_step} is past the end of this run ({num_iterations} steps); "
                             f"raise --num_iterations")
        print0(f"resumed from step {start_step} of {checkpoint_dir}")

    if master:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if resume is None:
            try:
                print0(f"note: {checkpoint_dir} holds checkpoints up to step {find_last_step(checkpoint_dir)} of an "
                       f"earlier run; this fresh run replaces its metrics and overwrites steps as it saves them")
            except CheckpointError:
                pass
            open(metrics_path, "w").close()  # a fresh run starts a fresh curve
        else:
            truncate_metrics(metrics_path, start_step)

    train_loader = tokenizing_distributed_data_loader_with_state(
        B, T, "train", device=device, resume_state_dict=loader_state, source=data_source)
    x, y, next_state = next(train_loader)  # prefetch; `consumed` is the state after the last batch trained on
    consumed = loader_state

    def save(step, val_bpb=None):
        states = [consumed]
        if ddp:
            states = [None] * world_size
            dist.all_gather_object(states, consumed)
        meta = {
            "model_config": config_dict(config),
            "step": step,
            "model_source": model_sources.canonical(args.model),
            "run_args": {**vars(args), "num_iterations": num_iterations},
            "val_bpb": val_bpb,
            "loop_state": {"dataloader_state": states if consumed is not None else None,
                           "smooth_loss": smooth_loss, "elapsed_s": elapsed, "min_val_bpb": min_val_bpb},
        }
        save_checkpoint(checkpoint_dir, step, orig_model.state_dict(), [opt.state_dict() for opt in optimizers],
                        meta, rank=rank)
        print0(f"saved step {step} to {checkpoint_dir}")

    def evaluate(step):
        nonlocal min_val_bpb
        val_loader = tokenizing_distributed_data_loader(B, T, "val", device=device, source=data_source)
        model.eval()
        with autocast_ctx:
            bpb = evaluate_bpb(model, val_loader, eval_steps, token_bytes)
        model.train()
        min_val_bpb = bpb if min_val_bpb is None else min(min_val_bpb, bpb)
        print0(f"step {step:05d} | val bpb {bpb:.4f} ({eval_steps * B * T * world_size:,} tokens)")
        if master:
            record = {"step": step, "val_bpb": bpb, "elapsed_s": elapsed}
            append_jsonl(metrics_path, record)
            if wandb_run:
                wandb_run.log(record, step=step)
        return bpb

    def sample():
        engine = Engine(orig_model, tokenizer)
        orig_model.eval()
        for prompt in SAMPLE_PROMPTS:
            tokens = tokenizer(prompt, prepend=tokenizer.get_bos_token_id())
            with autocast_ctx:
                results, _ = engine.generate_batch(tokens, num_samples=1, max_tokens=16, temperature=0)
            print0(f"  {tokenizer.decode(results[0][1:])!r}")
        orig_model.train()

    # wandb, only when asked for and installed
    wandb_run = None
    if args.wandb and args.run != "dummy" and master:
        try:
            import wandb
        except ImportError:
            raise SystemExit("error: --wandb needs the wandb package (pip install wandb)") from None
        wandb_run = wandb.init(project="nanochat", name=args.run,
                               config={**vars(args), "num_iterations": num_iterations})
    elif args.wandb and args.run == "dummy":
        print0("note: --wandb ignored for --run=dummy; give the run a name to log it")

    stop = StopFlag()
    stop.install()
    val_bpb = None
    step_times = []
    step = start_step
    while True:
        last_step = step == num_iterations
        stop_now = stop.requested
        if ddp:  # all ranks stop together or not at all
            t = torch.tensor([int(stop_now)], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            stop_now = bool(t.item())

        # save first, then evaluate: a crash in an eval or sample must never cost the trained weights
        if last_step or stop_now or (args.save_every > 0 and step % args.save_every == 0 and step != start_step):
            save(step, val_bpb)
        if stop_now and not last_step:
            print0(f"stopped at step {step}; continue with --resume_from_step={step} (and the same flags)")
            break
        if args.eval_every > 0 and (last_step or step % args.eval_every == 0):
            val_bpb = evaluate(step)
        if args.sample_every > 0 and master and (last_step or (step % args.sample_every == 0 and step > 0)):
            print0(f"step {step:05d} | samples (greedy):")
            sample()
        if last_step:
            break

        # one optimizer step: accumulate gradients over the micro-steps, clip, schedule, step
        synchronize()
        t0 = time.time()
        step_loss = torch.zeros((), device=device)
        for _ in range(accum_steps):
            with autocast_ctx:
                loss = model(x, y)
            step_loss += loss.detach()
            (loss / accum_steps).backward()
            consumed = next_state
            x, y, next_state = next(train_loader)
        if args.grad_clip > 0:
            # under torchrun each rank clips its own gradient before the optimizers average them (as nanochat
            # does); with one process this is exactly the global norm
            torch.nn.utils.clip_grad_norm_(orig_model.parameters(), args.grad_clip)
        lrm = lr_multiplier(step, num_iterations, args.warmup_ratio, args.warmdown_ratio, args.final_lr_frac)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lrm
        for group in muon_optimizer.param_groups:
            group["momentum"] = muon_momentum(step)
        for opt in optimizers:
            opt.step()
        orig_model.zero_grad(set_to_none=True)
        step_loss /= accum_steps
        if ddp:
            dist.all_reduce(step_loss, op=dist.ReduceOp.SUM)
            step_loss /= world_size
        train_loss = step_loss.item()  # also waits for the device
        synchronize()
        dt = time.time() - t0

        # bookkeeping and logging
        elapsed += dt
        step_times.append(dt)
        done = step + 1
        beta = 0.9
        smooth_loss = beta * smooth_loss + (1 - beta) * train_loss
        debiased = smooth_loss / (1 - beta ** done)
        tok_per_sec = args.total_batch_size / dt
        mfu = num_flops_per_token * tok_per_sec / (peak * world_size) if peak else None
        recent = step_times[1:] if len(step_times) > 1 else step_times  # the first step pays for warm-up/compile
        eta = sum(recent) / len(recent) * (num_iterations - done)
        if not math.isfinite(train_loss):
            raise SystemExit(f"error: the training loss became {train_loss} at step {step}; lower the learning "
                             f"rates or check the model (last checkpoint: see {checkpoint_dir})")
        mfu_text = f"{100 * mfu:.2f}%" if mfu is not None else "n/a"
        print0(f"step {step:05d}/{num_iterations:05d} ({100 * done / num_iterations:.1f}%) | "
               f"loss {train_loss:.6f} (smooth {debiased:.4f}) | lrm {lrm:.2f} | dt {dt * 1000:.1f}ms | "
               f"tok/sec {tok_per_sec:,.0f} | mfu {mfu_text} | eta {format_duration(eta)} | "
               f"elapsed {format_duration(elapsed)}", flush=True)
        if master:
            record = {"step": step, "loss": train_loss, "loss_smooth": debiased, "lr_mult": lrm,
                      "tok_per_sec": tok_per_sec, "mfu": mfu, "dt_ms": dt * 1000, "eta_s": eta,
                      "elapsed_s": elapsed, "total_tokens": done * args.total_batch_size}
            append_jsonl(metrics_path, record)
            if wandb_run:
                wandb_run.log(record, step=step)
        step += 1

    print0(f"done: {step} steps, {format_duration(elapsed)} of training"
           + (f", min val bpb {min_val_bpb:.4f}" if min_val_bpb is not None else ""))
    if device_type == "cuda":
        print0(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    model_flag = "" if model_sources.is_reference(args.model) else f" --model {model_sources.canonical(args.model)}"
    print0(f"next: python -m nanochat.scripts.base_loss --model-tag {model_tag}{model_flag}\n"
           f"      python -m nanochat.scripts.chat_cli -i base -g {model_tag}{model_flag} "
           f"-p \"The capital of France is\"")
    if wandb_run:
        wandb_run.finish()


def main(argv=None):
    args = parse_args(argv)
    try:
        train(args)
    except (CheckpointError, ModelSourceError) as e:
        raise SystemExit(f"error: {e}") from None
    except NotImplementedError as e:
        if model_sources.is_reference(args.model):
            raise
        # a learner file that is still partly skeleton: name what is missing, not a traceback
        raise SystemExit(f"error: {model_sources.describe(args.model)} does not implement everything training "
                         f"needs yet: {e or 'NotImplementedError'}") from None
    except KeyboardInterrupt:
        raise SystemExit("interrupted") from None
    finally:
        compute_cleanup()


if __name__ == "__main__":
    main()

"""Training throughput benchmark: ms per step, tokens per second and compile time, eager against compiled.

A step is base_train's own step with no gradient accumulation (`nanochat.training.accumulate_gradients` and
`optimizer_step`: forward, backward, gradient clipping, the AdamW and Muon steps, zero_grad), on a model and
optimizers built as base_train builds them for a depth, with the same speed-ups (fused AdamW, Newton–Schulz
settings). The batches are random token ids: throughput does not depend on the text.

The variants of a configuration (eager, compiled) live side by side in one process and take turns, one step
each per round, so a machine shared with other work slows them alike and their ratio stays meaningful. The
first step of each variant is timed on its own: for the compiled one it holds torch.compile's work, shown as
"compile s" (first step minus the median step); the medians of the later steps give ms/step and tok/s.

    python -m nanochat.scripts.bench_train                        # depth 4 and 8, seq 512, batch 8, both modes
    python -m nanochat.scripts.bench_train --configs 12:2048:16    # a GPU: bf16 autocast, MFU where known
    python -m nanochat.scripts.bench_train --compile off --model path/to/my_gpt.py   # your model, eager

Columns: ms per step (median), tokens/s, the model FLOP/s achieved (base_train's FLOPs-per-token estimate times
tokens/s), MFU (only where the device's peak is known or given with --peak_flops), the first step's seconds and
the compile time. The last line of each configuration is the compiled/eager ratio of tok/s.
"""

import argparse
import dataclasses
import gc
import itertools
import statistics
import time

import torch

from nanochat import model_source as model_sources
from nanochat.common import HelpFormatter, autodetect_device_type, compute_dtype
from nanochat.model_source import ModelSourceError
from nanochat.scripts.base_train import fastest_optimizers, model_config_kwargs
from nanochat.training import (accumulate_gradients, flops_per_token, muon_momentum, optimizer_step,
                               peak_flops_per_device)


@dataclasses.dataclass
class Variant:
    """One way of running the same model: its name in the table, whether torch.compile wraps it, and the
    optimizers to use (None = base_train's: the model's setup_optimizers plus `fastest_optimizers`)."""
    name: str
    compiled: bool
    make_optimizers: object = None


@dataclasses.dataclass
class Contender:
    """A built variant: the model, what forward/backward call, its optimizers, and its timings so far."""
    variant: Variant
    model: torch.nn.Module
    run: torch.nn.Module
    optimizers: list
    first_step_s: float = 0.0
    step_s: list = dataclasses.field(default_factory=list)


def parse_config(text):
    try:
        depth, seq, batch = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DEPTH:SEQ:BATCH such as 4:512:8, got {text!r}") from None
    if min(depth, seq, batch) < 1:
        raise argparse.ArgumentTypeError(f"DEPTH, SEQ and BATCH must be positive, got {text!r}")
    return depth, seq, batch


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.bench_train", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--configs", type=lambda s: [parse_config(c) for c in s.split(",")],
                   default=[(4, 512, 8), (8, 512, 8)], help="comma-separated DEPTH:SEQ:BATCH")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant after its first step")
    p.add_argument("--rounds", "--steps", type=int, default=5, help="timed rounds (one step of each variant per round)")
    p.add_argument("--compile", choices=["off", "on", "both"], default="both", help="torch.compile the model")
    p.add_argument("--vocab_size", type=int, default=4096, help="vocabulary (4096 = the embedded tokenizer's)")
    p.add_argument("--device_type", default="", help="cuda|mps|cpu; empty = autodetect")
    p.add_argument("--model", default=model_sources.REFERENCE, help="'reference' or the path of a model file")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--peak_flops", type=float, default=None, help="peak FLOP/s of the device, for MFU")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.rounds < 1:
        p.error("--warmup must be >= 0 and --rounds >= 1")
    if args.vocab_size < 2:
        p.error("--vocab_size must be at least 2")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    try:
        args.device_type = autodetect_device_type(args.device_type or None)
    except ValueError as e:
        p.error(f"--device_type: {e}")
    return args


def build(module, config, device, variant):
    torch.manual_seed(0)
    with torch.device(device):
        model = module.GPT(config)
    model.init_weights()
    if variant.make_optimizers is not None:
        optimizers = variant.make_optimizers(model)
    else:
        optimizers = fastest_optimizers(model.setup_optimizers(), device.type, variant.compiled)
    run = torch.compile(model, dynamic=False) if variant.compiled else model
    return Contender(variant, model, run, optimizers)


def timed_step(c, batches, autocast, sync):
    """One base_train step (no accumulation) of contender `c`; returns its wall-clock seconds."""
    sync()
    t0 = time.perf_counter()
    loss, _, _ = accumulate_gradients(c.run, batches, next(batches), 1, autocast)
    optimizer_step(c.model, c.optimizers, c.optimizers[1], 1.0, muon_momentum(0), 1.0)
    loss.item()
    sync()
    return time.perf_counter() - t0


def bench_config(module, depth, seq, batch, args, device, variants):
    """Build every variant, time each one's first step, warm up, then alternate. Returns the contenders."""
    config = module.GPTConfig(**model_config_kwargs(depth, seq, args.vocab_size))
    autocast = torch.amp.autocast(device_type="cuda", dtype=compute_dtype("cuda")) if device.type == "cuda" \
        else torch.autocast(device.type, enabled=False)
    sync = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device.type, lambda: None)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = [torch.randint(0, args.vocab_size, (batch, seq + 1), generator=gen) for _ in range(2)]
    batches = itertools.cycle([(r[:, :-1].to(device), r[:, 1:].to(device), None) for r in rows])
    contenders = [build(module, config, device, v) for v in variants]
    for c in contenders:
        c.first_step_s = timed_step(c, batches, autocast, sync)
        for _ in range(args.warmup):
            timed_step(c, batches, autocast, sync)
    for _ in range(args.rounds):
        for c in contenders:
            c.step_s.append(timed_step(c, batches, autocast, sync))
    return config, contenders


def report(depth, seq, batch, config, contenders, peak, device):
    """Print one table row per contender and the compiled/eager ratio."""
    model = contenders[0].model
    params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(model, config)
    tok_per_sec = {}
    for c in contenders:
        step = statistics.median(c.step_s)
        tps = batch * seq / step
        tok_per_sec[c.variant.name] = tps
        mfu = f"{100 * fpt * tps / peak:.1f}%" if peak else "n/a"
        compile_s = f"{max(c.first_step_s - step, 0.0):.1f}" if c.variant.compiled else "-"
        print(f"{depth:>5} {seq:>5} {batch:>5} {params / 1e6:>7.1f}M {c.variant.name:>9} {step * 1000:>9.1f} "
              f"{tps:>9,.0f} {fpt * tps / 1e9:>9.1f} {mfu:>6} {c.first_step_s:>8.1f} {compile_s:>9}", flush=True)
    names = list(tok_per_sec)
    for name in names[1:]:
        print(f"      {name}/{names[0]}: {tok_per_sec[name] / tok_per_sec[names[0]]:.3f}x tok/s")
    if device.type == "cuda":
        print(f"      peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def run_benchmark(args, module, variants):
    device = torch.device(args.device_type)
    name = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    print(f"device: {name} | dtype: {compute_dtype(device.type)} | torch {torch.__version__} | "
          f"threads: {torch.get_num_threads()} | model: {model_sources.describe(args.model)}")
    print(f"per variant: 1 first step (timed alone) + {args.warmup} warm-up, then {args.rounds} rounds "
          f"alternating one step of each ({', '.join(v.name for v in variants)})")
    header = f"{'depth':>5} {'seq':>5} {'batch':>5} {'params':>8} {'mode':>9} {'ms/step':>9} {'tok/s':>9} " \
             f"{'GFLOP/s':>9} {'MFU':>6} {'first s':>8} {'compile s':>9}"
    print(header)
    print("-" * len(header))
    peak = peak_flops_per_device(device.type, args.peak_flops)
    for depth, seq, batch in args.configs:
        try:
            config, contenders = bench_config(module, depth, seq, batch, args, device, variants)
        except torch.OutOfMemoryError:
            print(f"{depth:>5} {seq:>5} {batch:>5} out of memory")
            torch.cuda.empty_cache()
            continue
        report(depth, seq, batch, config, contenders, peak, device)
        del contenders
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        module = model_sources.load_model_module(args.model)
    except ModelSourceError as e:
        raise SystemExit(f"error: {e}") from None
    variants = {"off": [Variant("eager", False)], "on": [Variant("compiled", True)],
                "both": [Variant("eager", False), Variant("compiled", True)]}[args.compile]
    run_benchmark(args, module, variants)


if __name__ == "__main__":
    main()

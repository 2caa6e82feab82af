"""Training throughput benchmark: tokens per second of full training steps, printed as a table.

A step here is what base_train does per step with no gradient accumulation: forward, backward, gradient
clipping, the AdamW and Muon steps and zero_grad. The batches are random token ids (throughput does not depend
on the text), the model is built exactly as base_train builds it for a depth. A few warm-up steps (allocator,
kernel selection, torch.compile) are run first and not timed.

    python -m nanochat.scripts.bench_train                         # CPU default: depth 4 and 8, seq 512, batch 8
    python -m nanochat.scripts.bench_train --configs 12:2048:16 --compile both     # a GPU: bf16, MFU
    python -m nanochat.scripts.bench_train --model path/to/my_gpt.py               # your model against the reference

Columns: ms per step, tokens/s, the model FLOP/s achieved (base_train's FLOPs-per-token estimate times tokens/s)
and MFU, the latter only where the device's peak is known (see base_train) or given with --peak_flops.
"""

import argparse
import gc
import time
from contextlib import nullcontext

import torch

from nanochat import model_source as model_sources
from nanochat.common import autodetect_device_type, compute_dtype
from nanochat.model_source import ModelSourceError
from nanochat.scripts.base_train import HelpFormatter, flops_per_token, model_config_kwargs, peak_flops_per_device


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
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--compile", choices=["off", "on", "both"], default="off", help="torch.compile the model")
    p.add_argument("--vocab_size", type=int, default=4096, help="vocabulary (4096 = the embedded tokenizer's)")
    p.add_argument("--device_type", default="", help="cuda|mps|cpu; empty = autodetect")
    p.add_argument("--model", default=model_sources.REFERENCE, help="'reference' or the path of a model file")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--peak_flops", type=float, default=None, help="peak FLOP/s of the device, for MFU")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.steps < 1:
        p.error("--warmup must be >= 0 and --steps >= 1")
    if args.vocab_size < 2:
        p.error("--vocab_size must be at least 2")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be positive")
    try:
        args.device_type = autodetect_device_type(args.device_type or None)
    except ValueError as e:
        p.error(f"--device_type: {e}")
    return args


def bench_one(module, depth, seq, batch, args, device, compiled):
    """Build, warm up, time. Returns a dict of figures."""
    torch.manual_seed(0)
    config = module.GPTConfig(**model_config_kwargs(depth, seq, args.vocab_size))
    with torch.device(device):
        model = module.GPT(config)
    model.init_weights()
    num_params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(model, config)
    optimizers = model.setup_optimizers()
    run = torch.compile(model, dynamic=False) if compiled else model
    autocast = torch.amp.autocast(device_type="cuda", dtype=compute_dtype("cuda")) if device.type == "cuda" \
        else nullcontext()
    sync = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(device.type, lambda: None)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = [torch.randint(0, args.vocab_size, (batch, seq + 1), generator=gen) for _ in range(2)]
    batches = [(r[:, :-1].contiguous().to(device), r[:, 1:].contiguous().to(device)) for r in rows]

    def step(i):
        x, y = batches[i % 2]
        with autocast:
            loss = run(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        return loss

    for i in range(args.warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    loss.item()
    sync()
    dt = (time.perf_counter() - t0) / args.steps
    tok_per_sec = batch * seq / dt
    peak = peak_flops_per_device(device.type, args.peak_flops)
    result = dict(depth=depth, seq=seq, batch=batch, params=num_params, compiled=compiled, ms=dt * 1000,
                  tok_per_sec=tok_per_sec, flops=fpt * tok_per_sec, mfu=fpt * tok_per_sec / peak if peak else None)
    del model, run, optimizers, batches
    gc.collect()
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return result


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device_type)
    try:
        module = model_sources.load_model_module(args.model)
    except ModelSourceError as e:
        raise SystemExit(f"error: {e}") from None
    name = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    print(f"device: {name} | dtype: {compute_dtype(device.type)} | torch {torch.__version__} | "
          f"threads: {torch.get_num_threads()} | model: {model_sources.describe(args.model)}")
    print(f"{args.warmup} warm-up + {args.steps} timed steps each (forward, backward, clip, AdamW + Muon step)")
    header = f"{'depth':>5} {'seq':>5} {'batch':>5} {'params':>8} {'compile':>7} {'ms/step':>9} {'tok/s':>9} " \
             f"{'GFLOP/s':>9} {'MFU':>6}"
    print(header)
    print("-" * len(header))
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    for depth, seq, batch in args.configs:
        for compiled in modes:
            try:
                r = bench_one(module, depth, seq, batch, args, device, compiled)
            except torch.OutOfMemoryError:
                print(f"{depth:>5} {seq:>5} {batch:>5} {'':>8} {'yes' if compiled else 'no':>7} out of memory")
                torch.cuda.empty_cache()
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            print(f"{depth:>5} {seq:>5} {batch:>5} {r['params'] / 1e6:>7.1f}M {'yes' if compiled else 'no':>7} "
                  f"{r['ms']:>9.1f} {r['tok_per_sec']:>9,.0f} {r['flops'] / 1e9:>9.1f} {mfu:>6}", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: decode speed with the KV cache (Engine) against without it (GPT.generate), side by side.

    python -m nanochat.scripts.bench_decode                      # depth 4, 256-token prompt, 256 new tokens, cpu
    python -m nanochat.scripts.bench_decode --depth 8 --device_type cuda
    python -m nanochat.scripts.bench_decode --model path/to/my_gpt.py

Both decode greedily from the same randomly initialised model and the same random prompt, so they must produce
the same tokens (checked and printed). Without a cache every new token reruns the model over the whole
sequence so far; with it, the prompt runs once and each step feeds one token. Reported: new tokens per second
for each (prompt processing included in both) and the ratio.
"""

import argparse
import time

import torch

from nanochat import model_source as model_sources
from nanochat.common import autodetect_device_type
from nanochat.engine import Engine
from nanochat.model_source import ModelSourceError


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.bench_decode", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--depth", type=int, default=4, help="n_layer; n_embd = 64 * depth, head dim 128")
    p.add_argument("--vocab_size", "--vocab-size", dest="vocab_size", type=int, default=4096,
                   help="vocabulary size (4096 = the embedded-corpus tokenizer's)")
    p.add_argument("--prompt_tokens", "--prompt-tokens", dest="prompt_tokens", type=int, default=256)
    p.add_argument("--new_tokens", "--new-tokens", dest="new_tokens", type=int, default=256)
    p.add_argument("--device_type", default="cpu", help="cuda|mps|cpu; empty = autodetect")
    p.add_argument("--model", default="reference", help="'reference' or the path of a learner's gpt.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch's default); 1 gives steadier figures on a busy machine")
    args = p.parse_args(argv)
    if args.threads < 0:
        p.error("--threads must be >= 0")
    for name in ("depth", "vocab_size", "prompt_tokens", "new_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive")
    return args


def build(args, device):
    module = model_sources.load_model_module(args.model)
    n_embd = 64 * args.depth
    n_head = max(1, n_embd // 128)
    config = module.GPTConfig(sequence_len=args.prompt_tokens + args.new_tokens, vocab_size=args.vocab_size,
                              n_layer=args.depth, n_head=n_head, n_kv_head=n_head, n_embd=n_embd)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = module.GPT(config)
    # random weights everywhere (init_weights zeroes the head, and greedy decoding would repeat one token)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02 if p.ndim == 2 and p.size(0) != config.vocab_size else 1.0)
    return model.eval()


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(autodetect_device_type(args.device_type or None))
        model = build(args, device)
    except (ModelSourceError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    prompt = torch.randint(0, args.vocab_size, (args.prompt_tokens,), generator=torch.Generator().manual_seed(1)).tolist()
    engine = Engine(model)

    def uncached(n):
        return list(model.generate(prompt, max_tokens=n, temperature=0.0))

    def cached(n):
        results, _ = engine.generate_batch(prompt, max_tokens=n, temperature=0.0)
        return results[0][len(prompt):]

    uncached(4), cached(4)  # warm up allocators and kernels
    n = args.new_tokens
    tokens_cached, t_cached = timed(lambda: cached(n), device)
    tokens_uncached, t_uncached = timed(lambda: uncached(n), device)

    params = sum(p.numel() for p in model.parameters())
    print(f"device: {device.type}, torch threads: {torch.get_num_threads()}, model: {model_sources.describe(args.model)}")
    print(f"depth {args.depth}, n_embd {model.config.n_embd}, vocab {args.vocab_size}, {params / 1e6:.1f}M params; "
          f"{args.prompt_tokens}-token prompt, {n} new tokens, greedy")
    print(f"without KV cache (GPT.generate): {n / t_uncached:8.1f} tok/s  ({t_uncached:.2f} s)")
    print(f"with KV cache (Engine):          {n / t_cached:8.1f} tok/s  ({t_cached:.2f} s)")
    print(f"speedup: {t_uncached / t_cached:.1f}x")
    same = tokens_cached == tokens_uncached
    print(f"same tokens: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

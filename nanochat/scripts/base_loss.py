"""Evaluate a checkpoint's bits per byte on the train and val splits, and print a few greedy samples.

    python -m nanochat.scripts.base_loss                                 # the deepest base model, latest step
    python -m nanochat.scripts.base_loss --model-tag d4 --step 1 --split_tokens 65536
    python -m nanochat.scripts.base_loss -i sft --model path/to/my_gpt.py
    torchrun --standalone --nproc_per_node=8 -m nanochat.scripts.base_loss   # the tokens are split over ranks

Bits per byte (see nanochat/loss_eval.py) is the loss per byte of text rather than per token, so it compares
models with different tokenizers. The text is the pretraining data (shards if downloaded, else the embedded
corpus), read from the start of each split, so two checkpoints are always measured on the same tokens.
"""

import argparse
from contextlib import nullcontext

import torch

from nanochat import dataset, model_source as model_sources
from nanochat.checkpoint_manager import PHASES, CheckpointError, load_model
from nanochat.common import autodetect_device_type, compute_dtype, compute_init, print0, process_group_exit
from nanochat.dataloader import tokenizing_distributed_data_loader
from nanochat.engine import Engine
from nanochat.loss_eval import evaluate_bpb
from nanochat.model_source import ModelSourceError

SAMPLE_PROMPTS = [
    "The capital of France is",
    "A dictionary in Python maps",
    "The opposite of hot is",
    "The planets of the solar system are",
    "To open a file in Python, use",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m nanochat.scripts.base_loss", description=__doc__.split("\n")[0])
    p.add_argument("-i", "--phase", default="base", choices=PHASES, help="which phase's checkpoints (default: base)")
    p.add_argument("-g", "--model-tag", "--model_tag", dest="model_tag", default=None,
                   help="checkpoint tag such as d4 (default: the deepest, announced)")
    p.add_argument("-s", "--step", type=int, default=None, help="checkpoint step (default: the latest, announced)")
    p.add_argument("--model", default=None,
                   help="model implementation: 'reference' or a .py path "
                        "(default: the one the checkpoint was trained with)")
    p.add_argument("--device_type", default="", help="cuda|mps|cpu (default: autodetect, cuda > mps > cpu)")
    p.add_argument("--device_batch_size", type=int, default=None,
                   help="rows per forward (default: 32 on cuda, 4 elsewhere)")
    p.add_argument("--split_tokens", "--split-tokens", dest="split_tokens", type=int, default=None,
                   help="tokens per split (default: 20x524288 on cuda, 16384 elsewhere, so a laptop takes seconds)")
    p.add_argument("--data", default="auto", choices=list(dataset.SOURCES),
                   help="evaluation text: shards, the embedded corpus, or auto = shards when downloaded "
                        "(default: auto)")
    p.add_argument("--max_tokens", type=int, default=24, help="tokens per sample; 0 = no samples (default: 24)")
    args = p.parse_args(argv)
    if args.step is not None and args.step < 0:
        p.error(f"--step must be >= 0, got {args.step}")
    for name in ("device_batch_size", "split_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be positive, got {value}")
    if args.max_tokens < 0:
        p.error("--max_tokens must be >= 0")
    try:
        args.device_type = autodetect_device_type(args.device_type or None)
    except ValueError as e:
        p.error(f"--device_type: {e}")
    return args


def evaluate(args):
    ddp, rank, local_rank, world_size, device = compute_init(args.device_type)
    autocast_ctx = torch.amp.autocast(device_type="cuda", dtype=compute_dtype("cuda")) \
        if device.type == "cuda" else nullcontext()
    model, tokenizer, meta = load_model(args.phase, device, mode="eval", model_tag=args.model_tag,
                                        step=args.step, model_source=args.model)
    config = meta["model_config"]
    if config["vocab_size"] != tokenizer.get_vocab_size():
        raise SystemExit(f"error: the checkpoint was trained with a vocabulary of {config['vocab_size']} tokens but "
                         f"the current tokenizer has {tokenizer.get_vocab_size()}; the tokenizer in "
                         f"$NANOCHAT_BASE_DIR changed since training")
    data_source = dataset.resolve_source(args.data)
    if data_source == "shards":
        try:
            dataset.split_files("train"), dataset.split_files("val")
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None

    T = config["sequence_len"]
    B = args.device_batch_size or (32 if device.type == "cuda" else 4)
    split_tokens = args.split_tokens or (20 * 524288 if device.type == "cuda" else 16384)
    steps = max(1, split_tokens // (B * T * world_size))
    token_bytes = tokenizer.get_token_bytes(device)
    source_text = model_sources.describe(args.model if args.model else meta.get("model_source"))
    print0(f"checkpoint: {args.phase} step {meta['step']} | {source_text} | {config}")
    print0(f"data: {data_source} | {steps} steps of {B} x {T} tokens x {world_size} rank(s) = "
           f"{steps * B * T * world_size:,} tokens per split")

    results = {}
    for split in ("train", "val"):
        loader = tokenizing_distributed_data_loader(B, T, split, device=device, source=data_source, tokenizer=tokenizer)
        with autocast_ctx:
            results[split] = evaluate_bpb(model, loader, steps, token_bytes)
        print0(f"{split} bpb: {results[split]:.4f}")

    if args.max_tokens > 0 and rank == 0:
        print0("samples (greedy):")
        engine = Engine(model, tokenizer)
        for prompt in SAMPLE_PROMPTS:
            tokens = tokenizer(prompt, prepend=tokenizer.get_bos_token_id())
            with autocast_ctx:
                out, _ = engine.generate_batch(tokens, num_samples=1, max_tokens=args.max_tokens, temperature=0)
            print0(f"  {tokenizer.decode(out[0][1:])!r}")
    return results


def main(argv=None):
    args = parse_args(argv)
    with process_group_exit():
        try:
            evaluate(args)
        except (CheckpointError, ModelSourceError, dataset.DataError) as e:
            raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()

"""Which checkpoint the server talks with, and the workers built from it.

`choose_checkpoint` is quick (it only looks at file names) so a wrong --phase/--model-tag/--step is an error before
the server binds its port; `load_workers` is the slow part (torch, weights) and runs once the server is up.
With no phase given, the newest chat stage that has checkpoints is used (rl, then sft, then mid), else base.
A base model has never seen the chat tokens, so it runs in completion mode: the last user message is continued
as plain text.
"""

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

from nanochat.checkpoint_manager import CheckpointError, checkpoints_dir, find_largest_model, find_last_step
from nanochat.common import get_base_dir

CHAT_PHASES = ("rl", "sft", "mid")  # newest first
TINY_TRAIN = ("python -m nanochat.scripts.base_train --depth=4 --max_seq_len=512 --device_batch_size=1 "
              "--total_batch_size=512 --num_iterations=1")

log = logging.getLogger("nanochat.web")


@dataclass(frozen=True)
class Checkpoint:
    phase: str
    model_tag: str
    step: int
    directory: str

    @property
    def chat_mode(self) -> bool:
        return self.phase != "base"


def _find(phase: str, model_tag: str | None, step: int | None) -> Checkpoint:
    root = checkpoints_dir(phase)
    tag = model_tag or find_largest_model(root)
    directory = os.path.join(root, tag)
    last = find_last_step(directory)
    if step is not None and not os.path.exists(os.path.join(directory, f"model_{step:06d}.pt")):
        raise CheckpointError(f"no step {step} in {directory} (the latest is {last}); pass another --step")
    return Checkpoint(phase, tag, last if step is None else step, directory)


def choose_checkpoint(phase: str | None, model_tag: str | None = None, step: int | None = None) -> Checkpoint:
    """The checkpoint to serve; CheckpointError (saying what exists and what to run) when there is none."""
    if phase is not None:
        return _find(phase, model_tag, step)
    for candidate in (*CHAT_PHASES, "base"):
        try:
            return _find(candidate, model_tag, step)
        except CheckpointError:
            continue
    tag_text = f" with tag {model_tag}" if model_tag else ""
    raise CheckpointError(f"no checkpoint{tag_text} in {get_base_dir()} (looked for rl, sft, mid and base); "
                          f"train a tiny base model first (seconds on a CPU):\n  {TINY_TRAIN}")


def worker_devices(device_type: str, workers: int | None) -> list[str]:
    """One device per worker: each GPU once (the first `workers` of them), or the cpu/mps device `workers` times."""
    if device_type == "cuda":
        import torch

        count = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(min(count, workers or count))]
    return [device_type] * (workers or 1)


def load_workers(checkpoint: Checkpoint, device_type: str, workers: int | None, engine_class=None) -> list:
    """Build the workers: a model per GPU; on cpu/mps one model shared by all workers (each its own Engine, of
    `engine_class` when given: a learner's, from chat_web --engine)."""
    import torch

    from nanochat.checkpoint_manager import build_model
    from nanochat.common import compute_dtype
    from nanochat.engine import Engine
    from nanochat.web.pool import Worker

    devices = worker_devices(device_type, workers)
    if device_type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))  # the cores split between workers
    autocast = partial(torch.amp.autocast, device_type="cuda", dtype=compute_dtype("cuda")) \
        if device_type == "cuda" else nullcontext
    built = {}
    result = []
    for index, device in enumerate(devices):
        if device not in built:
            built[device] = build_model(checkpoint.directory, checkpoint.step, torch.device(device), mode="eval")
        model, tokenizer, meta = built[device]
        vocab = meta["model_config"]["vocab_size"]
        if vocab != tokenizer.get_vocab_size():
            raise CheckpointError(f"the checkpoint was trained with a vocabulary of {vocab} tokens but the tokenizer "
                                  f"in {get_base_dir()} has {tokenizer.get_vocab_size()}; it changed since training")
        result.append(Worker(index=index, device=device, engine=(engine_class or Engine)(model, tokenizer),
                             tokenizer=tokenizer, autocast=autocast))
    log.info("loaded %s checkpoint %s step %d on %s (%d worker%s)", checkpoint.phase, checkpoint.model_tag,
             checkpoint.step, ", ".join(sorted(set(devices))), len(result), "" if len(result) == 1 else "s")
    return result

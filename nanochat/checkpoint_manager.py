"""Saving and loading training checkpoints, and rebuilding a model from one.

A checkpoint of step N in a directory such as `$NANOCHAT_BASE_DIR/base_checkpoints/d4/` is three kinds of file:

    model_000N.pt             the model's state_dict (written by rank 0)
    optim_000N_rank{r}.pt     each rank's optimizer state (DistMuon keeps momentum only for the matrices a rank owns)
    meta_000N.json            model_config (the GPTConfig fields), step, model_source ("reference" or the
                              learner file the model came from), plus whatever the training script adds

Every file is written to a temporary name and renamed into place, so a crash mid-save never leaves a
half-written checkpoint under the real name. Tensors are loaded with `torch.load(weights_only=True)`, which
refuses to run arbitrary pickled code. Anything wrong (no directory, no such step, a truncated file) raises
`CheckpointError` naming the file and saying what to do.

Checkpoint directories are `<phase>_checkpoints/<model tag>/` with phase one of base, mid, sft, rl (the scripts'
`-i/--phase`). When the caller gives no tag, the deepest `d<N>` tag is used; with no step, the latest step; and the guess is printed.
"""

import glob
import json
import os
import re
import sys

import torch

from nanochat import model_source as model_sources
from nanochat.common import get_base_dir, print0
from nanochat.fsutil import atomic_path, atomic_write

PHASES = ("base", "mid", "sft", "rl")  # which training phase wrote a checkpoint: `-i/--phase` in the scripts
SOURCES = PHASES  # the old name, kept until every importer says PHASES
MODES = ("train", "eval")  # what a rebuilt model is put in: model.train() or model.eval()
COMPILED_PREFIX = "_orig_mod."


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete or unreadable; the message names the file and the way out."""


def model_path(checkpoint_dir, step):
    return os.path.join(checkpoint_dir, f"model_{step:06d}.pt")


def optim_path(checkpoint_dir, step, rank):
    return os.path.join(checkpoint_dir, f"optim_{step:06d}_rank{rank}.pt")


def meta_path(checkpoint_dir, step):
    return os.path.join(checkpoint_dir, f"meta_{step:06d}.json")


def checkpoints_dir(phase):
    if phase not in PHASES:
        raise ValueError(f"unknown checkpoint phase {phase!r}; choose one of {', '.join(PHASES)}")
    return os.path.join(get_base_dir(), f"{phase}_checkpoints")


def strip_compiled_prefix(state_dict):
    """torch.compile wraps the model, prefixing every key with `_orig_mod.`; the plain model wants them without."""
    return {k.removeprefix(COMPILED_PREFIX): v for k, v in state_dict.items()}


def save_checkpoint(checkpoint_dir, step, model_data, optimizer_data, meta_data, rank=0):
    """Write step `step`: the model and meta (rank 0 only) and this rank's optimizer state (if not None)."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    if rank == 0:
        model_data = strip_compiled_prefix(model_data)
        with atomic_path(model_path(checkpoint_dir, step)) as tmp:
            torch.save(model_data, tmp)
        atomic_write(meta_path(checkpoint_dir, step), json.dumps(meta_data, indent=2, default=str))
    if optimizer_data is not None:
        with atomic_path(optim_path(checkpoint_dir, step, rank)) as tmp:
            torch.save(optimizer_data, tmp)


def _torch_load(path, device):
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, disk errors: all mean "this file is unusable"
        raise CheckpointError(f"checkpoint file {path} is corrupt or incomplete ({type(e).__name__}: {e}); "
                              f"delete this step's files and resume from an earlier step or re-run training") from None


def _check_state_dict(data, path):
    """A model file must hold {name: tensor} with finite values; anything else is refused, naming the file."""
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in data.items()):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a model state dict (names to tensors); "
                              f"it was not saved by nanochat's save_checkpoint")
    for name, tensor in data.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: the weights {name} hold NaN or infinite values (training diverged "
                                  f"before this step was saved); use an earlier step")
    return data


def _check_config_fits(module, config, model_data, where):
    """Build the model on the meta device (no memory) and compare its tensor shapes with the saved weights, so a
    model_config that does not match its weights (a vocab_size of 10^9, say) is refused before anything big is
    allocated. A model that cannot be built on the meta device is left to the real build."""
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in module.GPT(config).state_dict().items()}
    except Exception:
        return
    for name, shape in shapes.items():
        saved = model_data.get(name)
        if saved is not None and tuple(saved.shape) != shape:
            raise CheckpointError(f"{where}: its model_config builds {name} with shape {list(shape)} but the saved "
                                  f"weights have {list(saved.shape)}; the meta file does not belong to these weights")


def _steps_in(checkpoint_dir):
    steps = []
    for path in glob.glob(os.path.join(checkpoint_dir, "model_*.pt")):
        m = re.fullmatch(r"model_(\d+)\.pt", os.path.basename(path))
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def _require_dir(checkpoint_dir):
    if not os.path.isdir(checkpoint_dir):
        raise CheckpointError(f"no checkpoint directory {checkpoint_dir}; train a model first "
                              f"(python -m nanochat.scripts.base_train) or check --model-tag and NANOCHAT_BASE_DIR")


def load_checkpoint(checkpoint_dir, step, device, load_optimizer=False, rank=0):
    """Return (model_data, optimizer_data or None, meta_data) of step `step`, tensors on `device`."""
    _require_dir(checkpoint_dir)
    if not os.path.exists(model_path(checkpoint_dir, step)):
        steps = _steps_in(checkpoint_dir)
        have = f"steps available: {', '.join(map(str, steps))}" if steps else "it holds no checkpoints"
        raise CheckpointError(f"no checkpoint for step {step} in {checkpoint_dir} ({have}); pass one of those with --step")
    model_data = _check_state_dict(_torch_load(model_path(checkpoint_dir, step), device),
                                   model_path(checkpoint_dir, step))
    optimizer_data = None
    if load_optimizer:
        path = optim_path(checkpoint_dir, step, rank)
        if not os.path.exists(path):
            raise CheckpointError(f"optimizer state {path} is missing; was step {step} saved without optimizer "
                                  f"state or by a different number of ranks? Resume with the same torchrun "
                                  f"--nproc_per_node, or start the optimizer afresh")
        optimizer_data = _torch_load(path, device)
    path = meta_path(checkpoint_dir, step)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint metadata {path} is missing; the save of step {step} did not finish, "
                              f"use an earlier step")
    try:
        with open(path, encoding="utf-8") as f:
            meta_data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint metadata {path} is unreadable ({e}); use an earlier step") from None
    if not isinstance(meta_data, dict) or not isinstance(meta_data.get("model_config"), dict):
        raise CheckpointError(f"checkpoint metadata {path} has no model_config; it was not written by nanochat")
    return model_data, optimizer_data, meta_data


def find_last_step(checkpoint_dir):
    """The highest step with a model file in `checkpoint_dir`."""
    _require_dir(checkpoint_dir)
    steps = _steps_in(checkpoint_dir)
    if not steps:
        raise CheckpointError(f"no model_<step>.pt files in {checkpoint_dir}; train a model first")
    return steps[-1]


def find_largest_model(checkpoints_dir):
    """The tag to use when none is given: the deepest `d<N>` tag, else the most recently modified one.
    Only tags that hold at least one model file count (a run that died before its first save is skipped)."""
    if not os.path.isdir(checkpoints_dir):
        raise CheckpointError(f"no checkpoints in {checkpoints_dir} (the directory does not exist); train a model first")
    tags = [t for t in os.listdir(checkpoints_dir) if _steps_in(os.path.join(checkpoints_dir, t))]
    if not tags:
        raise CheckpointError(f"no model tags with checkpoints in {checkpoints_dir}; train a model first")
    depths = {}
    for tag in tags:
        m = re.fullmatch(r"d(\d+)", tag)
        if m:
            depths[tag] = int(m.group(1))
    if depths:
        return max(depths, key=depths.get)
    return max(tags, key=lambda t: os.path.getmtime(os.path.join(checkpoints_dir, t)))


def build_model(checkpoint_dir, step, device, mode, model_source=None, trusted_dirs=None):
    """Rebuild the model saved at `step` and load its weights. Returns (model, tokenizer, meta).

    The model class comes from `model_source` if given, else from the checkpoint's meta ("reference" or the
    learner file it was trained from; a file is run only from inside the current directory or `trusted_dirs`,
    see `model_source.checkpoint_model_source`). On cpu/mps, bf16 tensors are loaded as fp32.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    device = torch.device(device)
    model_data, _, meta = load_checkpoint(checkpoint_dir, step, device)
    if device.type in ("cpu", "mps"):
        model_data = {k: v.float() if v.dtype == torch.bfloat16 else v for k, v in model_data.items()}
    model_data = strip_compiled_prefix(model_data)
    if model_source is None:
        source = model_sources.checkpoint_model_source(meta.get("model_source"), meta_path(checkpoint_dir, step),
                                                       trusted_dirs)
    else:
        source = model_source
        if not model_sources.is_reference(source):
            print(f"model code: {model_sources.canonical(source)} (--model)", file=sys.stderr)
    module = model_sources.load_model_module(source)
    try:
        config = module.GPTConfig(**meta["model_config"])
    except TypeError as e:
        raise CheckpointError(f"{meta_path(checkpoint_dir, step)}: its model_config does not fit "
                              f"{model_sources.describe(source)}'s GPTConfig ({e})") from None
    _check_config_fits(module, config, model_data, meta_path(checkpoint_dir, step))
    # built straight on the device (not via init_weights, which a learner may not have written yet);
    # the checkpoint's tensors then replace the fresh ones, dtype included
    try:
        with device:
            model = module.GPT(config)
    except (TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(f"{meta_path(checkpoint_dir, step)}: no model can be built from its model_config "
                              f"{meta['model_config']} ({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(model_data, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{model_path(checkpoint_dir, step)} does not fit {model_sources.describe(source)}: "
                              f"{e}") from None
    if mode == "train":
        model.train()
    else:
        model.eval()
    from nanochat.tokenizer import get_tokenizer  # imported late: loading weights needs no tokenizer
    return model, get_tokenizer(), meta


def load_model(phase, device, mode, model_tag=None, step=None, model_source=None, trusted_dirs=None):
    """Load `<phase>_checkpoints/<model_tag>/` at `step` (guessing and announcing what is not given)."""
    root = checkpoints_dir(phase)
    guessed = model_tag is None or step is None
    if model_tag is None:
        model_tag = find_largest_model(root)
    checkpoint_dir = os.path.join(root, model_tag)
    if step is None:
        step = find_last_step(checkpoint_dir)
    model, tokenizer, meta = build_model(checkpoint_dir, step, device, mode, model_source=model_source,
                                         trusted_dirs=trusted_dirs)
    if guessed:
        print0(f"loaded {phase} checkpoint {model_tag} step {step} from {checkpoint_dir} "
               f"(choose another with --model-tag/--step)")
    return model, tokenizer, meta

"""Shared plumbing: device and dtype choice, torchrun/DDP set-up, rank-0 printing, the base dir, seeding, and the
command-line value types every script (and the workbench CLI) uses.

Everything that differs between a laptop (cpu / Apple mps) and a GPU node (cuda, maybe many ranks) is
decided here, so the rest of the stack can ask one question ("which device? which dtype? am I rank 0?").
torch is imported inside the functions that need it, so the argparse helpers load without it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import random
import traceback

DEVICE_TYPES = ("cuda", "mps", "cpu")
DIST_TIMEOUT_ENV = "NANOCHAT_DIST_TIMEOUT"
DEFAULT_DIST_TIMEOUT_S = 900.0
# how gloo words a collective that timed out or lost its peer (torch gives these errors no type of their own)
GLOO_FAILURES = ("third_party/gloo/", "Timed out waiting", "pair closure", "Connection closed by peer",
                 "Connection reset by peer")


# ---------------------------------------------------------------------------------------------------------------
# command-line values

def _number_in(text: str, kind: type, low, high, what: str):
    """Parse `text` as `kind` (int or float) and check low <= value <= high (None: unbounded); argparse's error."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _number_in(text, int, 1, None, "a positive integer")


def steps_or_auto(text: str) -> int:
    """argparse type: a positive number of steps, or -1 for "the script works it out"."""
    value = _number_in(text, int, -1, None, "a positive number of steps or -1")
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive number of steps or -1, got 0")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _number_in(text, int, 0, None, "a number >= 0")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535."""
    return _number_in(text, int, 0, 65535, "a port number from 0 to 65535")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number_in(text, float, None, None, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number_in(text, float, 0.0, None, "a number >= 0")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default in (None, "", False):
            return action.help
        return super()._get_help_string(action)


# ---------------------------------------------------------------------------------------------------------------
# devices, processes, seeding


def get_base_dir() -> str:
    """Where checkpoints, tokenizers and data shards live: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat."""
    base = os.environ.get("NANOCHAT_BASE_DIR")
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".cache", "nanochat")
    os.makedirs(base, exist_ok=True)
    return base


def autodetect_device_type(override: str | None = None) -> str:
    """cuda > mps > cpu, unless `override` (or $NANOCHAT_DEVICE) names one. An unavailable override is an error."""
    import torch

    override = override or os.environ.get("NANOCHAT_DEVICE") or None
    if override:
        if override not in DEVICE_TYPES:
            raise ValueError(f"unknown device type {override!r}; choose one of {', '.join(DEVICE_TYPES)}")
        if override == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU")
        if override == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was requested but this torch build/machine has no Apple MPS")
        return override
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def compute_dtype(device_type: str) -> torch.dtype:
    """The autocast/activation dtype: bf16 on cuda, fp32 elsewhere.

    MPS gets fp32 on purpose: bf16 autocast and several bf16 kernels are missing or slow on Apple GPUs across
    torch versions (nanochat #685, #741), and fp32 is always correct there.
    """
    import torch

    return torch.bfloat16 if device_type == "cuda" else torch.float32


def is_ddp() -> bool:
    """True when launched by torchrun (RANK is set)."""
    return int(os.environ.get("RANK", -1)) != -1


def get_dist_info() -> tuple[bool, int, int, int]:
    """(ddp, rank, local_rank, world_size) from torchrun's environment; (False, 0, 0, 1) otherwise."""
    if is_ddp():
        return True, int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    return False, 0, 0, 1


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only."""
    if int(os.environ.get("RANK", 0)) == 0:
        print(*args, **kwargs)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def compute_init(device_type: str | None = None, seed: int = 42):
    """Pick the device, seed, and join the process group when under torchrun.

    Returns (ddp, rank, local_rank, world_size, device). The backend is nccl on cuda and gloo on cpu/mps.
    """
    import torch
    import torch.distributed as dist

    device_type = autodetect_device_type(device_type)
    seed_everything(seed)
    if device_type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    ddp, rank, local_rank, world_size = get_dist_info()
    if device_type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_type)
    if ddp and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=dist_timeout_seconds())
        if device_type == "cuda":
            dist.init_process_group(backend="nccl", device_id=device, timeout=timeout)
        else:
            dist.init_process_group(backend="gloo", timeout=timeout)
        dist.barrier()
    return ddp, rank, local_rank, world_size, device


def dist_timeout_seconds() -> float:
    """How long a collective (all_reduce, barrier, ...) waits for the other ranks: $NANOCHAT_DIST_TIMEOUT
    seconds, default 15 minutes (longer than any rank-0-only work: saving a checkpoint, printing samples)."""
    text = os.environ.get(DIST_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_DIST_TIMEOUT_S
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError as e:
        raise SystemExit(f"error: ${DIST_TIMEOUT_ENV}: {e}") from None


def compute_cleanup() -> None:
    """Leave the process group. The barrier first: a rank that tears gloo down while another is still busy
    (rank 0 writing a checkpoint, say) can abort the whole job at exit."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group_exit():
    """Wrap a script's run. On success, leave the process group as `compute_cleanup` does. On failure, leave it
    at once (a barrier could wait forever for a rank that is gone), and turn a collective that failed or timed
    out (a rank stopped, hung or died) into one line naming this rank, instead of a traceback per rank."""
    import torch.distributed as dist

    try:
        yield
    except BaseException as e:
        if not (dist.is_available() and dist.is_initialized()):
            raise
        rank, world_size = dist.get_rank(), dist.get_world_size()
        dist.destroy_process_group()
        if from_a_collective(e):
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise SystemExit(
                f"error: rank {rank} of {world_size} stopped waiting for the other ranks ({first_line}); one of "
                f"them is stuck (stopped, hung, swapping) or died, see its output. A collective waits at most "
                f"{dist_timeout_seconds():g}s (${DIST_TIMEOUT_ENV} sets it)") from None
        raise
    compute_cleanup()


def from_a_collective(exc: BaseException) -> bool:
    """True for an error raised by torch.distributed's collectives. NCCL's have a type (DistError); gloo's are
    plain RuntimeErrors, raised from distributed_c10d or from an async handle's wait() anywhere, so for those
    gloo's own wording is the only mark torch gives (GLOO_FAILURES)."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    return any(words in str(exc) for words in GLOO_FAILURES) or any(
        frame.filename.endswith(os.path.join("torch", "distributed", "distributed_c10d.py"))
        for frame in traceback.extract_tb(exc.__traceback__))

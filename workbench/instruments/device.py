"""Where an instrument's job runs, inside the isolated child: the device, its autocast, waiting for it, its peak
memory. The same choices base_train makes (cuda > mps > cpu, bf16 autocast on cuda only)."""

import contextlib

from workbench.instruments.isolate import UsageError


def resolve(request: dict) -> str:
    """request["device"] if it is available, else the best one; an unavailable choice is a usage error."""
    from nanochat.common import autodetect_device_type
    try:
        return autodetect_device_type(request.get("device"))
    except ValueError as e:
        raise UsageError(str(e)) from None


def autocast(device: str):
    import torch

    from nanochat.common import compute_dtype
    return torch.amp.autocast("cuda", dtype=compute_dtype(device)) if device == "cuda" else contextlib.nullcontext()


def synchronize(device: str) -> None:
    """Wait for queued work (a no-op on the CPU), so a wall-clock time is true."""
    import torch
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def reset_peak(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> tuple[int, str]:
    """(bytes, kind): torch's peak allocation on cuda, else the process's peak resident size."""
    import resource

    import torch
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated()), "allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss"  # Linux: ru_maxrss in kilobytes

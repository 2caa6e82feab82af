"""The pieces of a training loop that every training script shares: where it runs, the learning-rate schedule,
one optimizer step over accumulated micro-batches, Ctrl-C handling and the metrics file.

base_train uses all of them; the later phases (mid-training, SFT, RL) reuse them so that every phase trains
with the same optimizers, the same schedule and the same torchrun behaviour. Each is a plain function of its
inputs (plus `Compute`, the record of where this process runs).
"""

import dataclasses
import json
import math
import signal
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist

from nanochat.common import compute_dtype, compute_init, print0

MOMENTUM_WARMUP_STEPS = 300  # Muon momentum goes 0.85 -> 0.95 over these steps
# bf16 dense peak FLOP/s per GPU, matched against torch.cuda.get_device_name(); first match wins
GPU_PEAK_FLOPS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]


# ---------------------------------------------------------------------------------------------------------------
# where this process runs

@dataclasses.dataclass
class Compute:
    """This process's place in the run: its device, its rank among `world_size`, the autocast context."""
    ddp: bool
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    autocast_ctx: object
    use_compile: bool

    @property
    def device_type(self) -> str:
        return self.device.type

    @property
    def master(self) -> bool:
        return self.rank == 0

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (a no-op on cpu), so wall-clock timings are true."""
        if self.device_type == "cuda":
            torch.cuda.synchronize()
        elif self.device_type == "mps":
            torch.mps.synchronize()


def setup_compute(device_type="", compile_flag=None) -> Compute:
    """Pick the device, join torchrun's process group if any, and choose autocast and torch.compile
    (compile defaults to on for cuda only)."""
    ddp, rank, local_rank, world_size, device = compute_init(device_type or None)
    autocast_ctx = torch.amp.autocast(device_type="cuda", dtype=compute_dtype(device.type)) \
        if device.type == "cuda" else nullcontext()
    use_compile = device.type == "cuda" if compile_flag is None else compile_flag
    return Compute(ddp, rank, local_rank, world_size, device, autocast_ctx, use_compile)


def any_rank(flag: bool, compute: Compute) -> bool:
    """True on every rank when `flag` is true on any rank (so all ranks stop together or not at all)."""
    if not compute.ddp:
        return flag
    t = torch.tensor([int(flag)], device=compute.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---------------------------------------------------------------------------------------------------------------
# the schedule

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


# ---------------------------------------------------------------------------------------------------------------
# one optimizer step

def accumulate_gradients(model, loader, batch, accum_steps, autocast_ctx):
    """Forward and backward over `accum_steps` micro-batches, the first being the prefetched `batch`
    (inputs, targets, loader state after it). Gradients are scaled so that they sum to the mean's.

    Returns (mean loss as a tensor, the loader state after the last batch trained on, the next prefetched batch)."""
    step_loss = torch.zeros((), device=batch[0].device)
    consumed = None
    for _ in range(accum_steps):
        x, y, state = batch
        with autocast_ctx:
            loss = model(x, y)
        step_loss += loss.detach()
        (loss / accum_steps).backward()
        consumed = state
        batch = next(loader)
    return step_loss / accum_steps, consumed, batch


def optimizer_step(model, optimizers, muon_optimizer, lrm, momentum, grad_clip):
    """Clip the gradient norm (0 = off), set each group's lr to initial_lr x `lrm` and Muon's momentum, step
    every optimizer and clear the gradients."""
    if grad_clip > 0:
        # under torchrun each rank clips its own gradient before the optimizers average them (as nanochat
        # does); with one process this is exactly the global norm
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lrm
    for group in muon_optimizer.param_groups:
        group["momentum"] = momentum
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)


def mean_over_ranks(value: torch.Tensor, compute: Compute) -> float:
    """The mean of a scalar tensor over all ranks, as a float (this waits for the device)."""
    if compute.ddp:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= compute.world_size
    return value.item()


def means_over_ranks(values: list, compute: Compute) -> list:
    """`mean_over_ranks` of several scalar tensors at once: one collective and one wait for the device (a
    training loop that reports every N steps keeps the N losses on the device until then)."""
    stacked = torch.stack([v.detach().float() for v in values])
    if compute.ddp:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= compute.world_size
    return stacked.tolist()


# ---------------------------------------------------------------------------------------------------------------
# throughput

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


# ---------------------------------------------------------------------------------------------------------------
# metrics and run control

def config_dict(config):
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))


def append_jsonl(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path, last_step):
    """On resume, keep the records up to the resumed step so the file holds one unbroken curve."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return
    kept = []
    for line in lines:
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


class Timer:
    """Wall-clock time of one step, with the device synchronised at both ends."""

    def __init__(self, compute: Compute):
        self.compute = compute

    def __enter__(self):
        self.compute.synchronize()
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.compute.synchronize()
        self.seconds = time.time() - self.start

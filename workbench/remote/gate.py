"""The readiness gate: before paying for GPUs, make sure the run can work and say what it will cost.

For the learner's model (`launch --model FILE`), through the check engine (the same client `check` uses):
  - every check passes;
  - the loss at init is ≈ ln(vocab) (a model that starts out guessing uniformly), within 10%;
  - it overfits one batch: the loss falls below a tenth of its start within OVERFIT_STEPS steps on CPU.
For every model, from the base stage's arguments (preset + overrides) and the reference `nanochat/gpt.py`:
  - memory per GPU: 16 bytes per parameter (fp32 weights, gradients, optimizer moments) plus the activations
    of each row against the target GPU's memory; the largest power-of-two device batch (up to the one asked
    for) that fits is used;
  - time and cost: estimate_flops() × tokens ÷ (GPUs × peak FLOP/s of the `gpu` type × ASSUMED_MFU) and
    × price_per_gpu_hour.
A failed item refuses the launch unless --force. torch is imported only when the gate runs.
"""

import contextlib
import enum
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from workbench.check.result import Status as CheckStatus
from workbench.remote.targets import Target

OVERFIT_STEPS = 15
INIT_LOSS_TOLERANCE = 0.10   # relative to ln(vocab)
OVERFIT_FACTOR = 0.10        # final loss below this fraction of the first
ASSUMED_MFU = 0.40
MEMORY_HEADROOM = 0.90       # of the GPU's memory, the rest for the CUDA context and fragmentation
BYTES_PER_PARAM = 16
CHECK_TIMEOUT_S = 300.0
# memory per GPU in GiB; the longest name contained in the target's `gpu` wins (A100-40GB before A100)
GPU_MEMORY_GIB = {"H200": 141, "H100": 80, "A100-40GB": 40, "A100": 80, "L40S": 48, "A6000": 48, "L4": 24,
                  "A10G": 24, "A10": 24, "RTX 4090": 24, "4090": 24, "V100": 32, "T4": 16}


class Status(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INFO = "info"


@dataclass
class GateItem:
    name: str
    status: Status
    text: str


@dataclass
class GateReport:
    items: list[GateItem] = field(default_factory=list)
    device_batch_size: int | None = None  # the largest that fits, when a GPU was estimated
    hours: float | None = None
    cost: float | None = None

    @property
    def passed(self) -> bool:
        return all(item.status is not Status.FAIL for item in self.items)

    def add(self, name: str, status: Status, text: str) -> None:
        self.items.append(GateItem(name, status, text))


def _lookup(table: dict, gpu: str | None):
    if not gpu:
        return None
    keys = [k for k in table if k.lower() in gpu.lower()]
    return table[max(keys, key=len)] if keys else None


def peak_flops(gpu: str | None) -> float | None:
    from nanochat.training import GPU_PEAK_FLOPS  # bf16 dense peaks, the table MFU is reported against
    return _lookup(dict(GPU_PEAK_FLOPS), gpu)


def check_learner(model: Path, report: GateReport) -> None:
    """Checks, loss at init and overfitting one batch: one run of the check engine with OVERFIT_STEPS steps."""
    from workbench.check.client import RunnerError, check_file
    try:
        result = check_file(str(model), steps=OVERFIT_STEPS, timeout=CHECK_TIMEOUT_S)
    except RunnerError as e:
        report.add("checks", Status.FAIL, f"the checker could not run: {str(e).splitlines()[0]}")
        return
    if not result.get("ok"):
        todo = result.get("next_todo") or {}
        error = result.get("error") or {}
        why = (f"next TODO {todo.get('qualname', '?')}" if todo else
               f"{error.get('type', 'error')}: {error.get('message', '')}".strip())
        bad = [c.get("qualname", "?") for c in result.get("components", []) if c.get("status") != CheckStatus.PASS]
        report.add("checks", Status.FAIL, f"not all checks pass ({why}"
                   + (f"; failing: {', '.join(bad[:4])}" if bad else "") + ") — run `nanochat-workbench check`")
        return
    report.add("checks", Status.PASS, f"all checks pass ({len(result.get('components', []))} components)")
    losses = result.get("losses") or []
    vocab = (result.get("config") or {}).get("vocab_size")
    if not losses or not vocab:
        report.add("loss at init", Status.FAIL, "the checker reported no losses")
        return
    expected = math.log(vocab)
    delta = abs(losses[0] - expected)
    ok = delta <= INIT_LOSS_TOLERANCE * expected
    report.add("loss at init", Status.PASS if ok else Status.FAIL,
               f"{losses[0]:.3f} vs ln({vocab}) = {expected:.3f} "
               f"(|Δ| {delta:.3f}, allowed {INIT_LOSS_TOLERANCE * expected:.3f})"
               + ("" if ok else " — look at init_weights: the output layer should start at zero"))
    target = OVERFIT_FACTOR * losses[0]
    ok = min(losses) < target
    report.add("overfit one batch", Status.PASS if ok else Status.FAIL,
               f"loss {losses[0]:.3f} → {losses[-1]:.3f} in {len(losses) - 1} steps (needs < {target:.3f})"
               + ("" if ok else " — the model does not learn: check backward, setup_optimizers and the "
                                "learning rates"))


def _count(n: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:g}"


def _base_args(plan) -> list[str]:
    return next((list(s.args) for s in plan.stages if s.stage == "base"), [])


def _vocab_size(plan) -> int:
    from nanochat import presets
    from nanochat.tokenizer import EMBEDDED_VOCAB_SIZE
    args = list(presets.get_preset(plan.preset).stages.get("tokenizer", ()))
    for i, arg in enumerate(args):
        if arg == "--vocab-size" and i + 1 < len(args):
            return int(args[i + 1])
    return EMBEDDED_VOCAB_SIZE


def estimate_run(plan, report: GateReport) -> None:
    """Memory per GPU, device batch, time and cost of the base stage, from the reference model on the meta device."""
    import torch
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.scripts import base_train
    target: Target = plan.target
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = base_train.parse_args(_base_args(plan))
    except SystemExit:
        why = (errors.getvalue().strip().splitlines() or ["?"])[-1]
        report.add("arguments", Status.FAIL, f"base_train would stop at once: {why}")
        return
    vocab = _vocab_size(plan)
    config = GPTConfig(**base_train.model_config_kwargs(args.depth, args.max_seq_len, vocab))
    with torch.device("meta"):
        model = GPT(config)
    params = sum(p.numel() for p in model.parameters())
    token_flops = model.estimate_flops()
    _estimate_memory(target, config, params, args, report)
    iterations, how = base_train.horizon(args, params, token_flops)
    tokens = iterations * args.total_batch_size
    flops = token_flops * tokens
    peak = peak_flops(target.gpu)
    head = (f"depth {args.depth}, {_count(params)} parameters, vocab {vocab:,}; {_count(tokens)} tokens "
            f"({iterations} steps, {how}); {flops:.2e} FLOPs")
    if not target.total_gpus or not peak:
        why = "no GPUs on this target" if not target.total_gpus else f"peak FLOP/s of gpu = {target.gpu!r} unknown"
        report.add("time", Status.INFO, f"{head}; no time estimate ({why})")
        return
    report.hours = flops / (target.total_gpus * peak * ASSUMED_MFU) / 3600
    text = f"{head}; ≈ {report.hours:.2f} h on {target.total_gpus}× {target.gpu} at {ASSUMED_MFU:.0%} MFU"
    if target.price_per_gpu_hour is not None:
        report.cost = report.hours * target.total_gpus * target.price_per_gpu_hour
        text += f"; ≈ ${report.cost:,.2f} at ${target.price_per_gpu_hour:g}/GPU-hour"
    report.add("time", Status.INFO, text)


def _estimate_memory(target: Target, config, params: int, args, report: GateReport) -> None:
    if not target.gpus:
        report.add("memory", Status.INFO, "no GPUs on this target: the run sizes its batch from the RAM it finds")
        return
    gib = _lookup(GPU_MEMORY_GIB, target.gpu)
    if gib is None:
        report.add("memory", Status.INFO, f"memory of gpu = {target.gpu!r} unknown; the run probes its batch size "
                                          f"(known: {', '.join(GPU_MEMORY_GIB)})")
        return
    # activations of one row kept for backward: ~34 bytes per token per layer per channel in bf16 (Korthikanti et
    # al. 2022, without the attention-score term: attention is fused) plus the fp32 logits and their gradient
    per_row = config.sequence_len * (34 * config.n_layer * config.n_embd + 8 * config.vocab_size)
    fixed = BYTES_PER_PARAM * params
    budget = MEMORY_HEADROOM * gib * 1024**3 - fixed
    max_rows = max(1, args.total_batch_size // (config.sequence_len * target.total_gpus))
    if isinstance(args.device_batch_size, int):
        max_rows = min(max_rows, args.device_batch_size)
    rows = 0
    while (rows * 2 or 1) <= max_rows and (rows * 2 or 1) * per_row <= budget:
        rows = rows * 2 or 1
    text = (f"{fixed / 1024**3:.1f} GiB weights+grads+optimizer + {per_row / 1024**3:.2f} GiB per row of "
            f"{config.sequence_len} tokens, against {gib} GiB per {target.gpu}")
    if rows == 0:
        report.add("memory", Status.FAIL, f"{text}: not even one row fits — lower --depth or max_seq_len")
        return
    report.device_batch_size = rows
    report.add("memory", Status.PASS, f"{text}: device batch {rows} fits")


def run_gate(plan, *, skip_checks: bool = False) -> GateReport:
    """Everything above for a launch plan (service.LaunchPlan). Blocking (it runs the check engine)."""
    report = GateReport()
    if plan.model is not None and not skip_checks:
        check_learner(plan.model, report)
    elif plan.model is None:
        report.add("checks", Status.INFO, "the reference model: no learner checks needed")
    if any(s.stage == "base" for s in plan.stages):
        estimate_run(plan, report)
    else:
        report.add("time", Status.INFO, f"no estimate for stage {plan.launch_stage} (only pretraining is estimated)")
    return report


def format_report(report: GateReport, plan) -> str:
    marks = {Status.PASS: "✓", Status.FAIL: "✗", Status.INFO: "·"}
    lines = [f"readiness gate: {plan.model.name if plan.model else 'reference model'} → {plan.target.name}"]
    lines += [f"  {marks[item.status]} {item.name}: {item.text}" for item in report.items]
    return "\n".join(lines)

"""`nanochat-workbench trace --grad [--steps N] [FILE]`: how training moves each layer, for a few optimizer steps.

It builds the same depth-4 model as `trace` (from FILE, or the reference), initialises it the way training does
(lm_head and the output projections start at zero: nothing is filled in here), takes one batch of real text with
its next-token targets, and runs N steps of the model's own optimizers (`setup_optimizers`). After each backward
it measures, per layer (the embedding, each block's attention and MLP, lm_head):

- |∇|, the L2 norm of the layer's gradients (none: no gradient reached it — the graph is cut somewhere);
- Δ/W, the size of the step the optimizer took relative to the weights, ‖W_after − W_before‖ / ‖W_before‖
  (about 1e-3 to 1e-2 is healthy; a layer that starts at zero has no ratio until it has weights).

The learner's code runs in this process, guarded like `trace`: a TODO or an error is one line, not a traceback.
"""

import math
from collections import OrderedDict

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workbench.course.trace import open_trace


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: "wte", "h.0.attn", "h.0.mlp", ..., "lm_head"."""
    parts = name.split(".")
    if parts[0] == "transformer" and len(parts) > 3 and parts[1] == "h":
        return f"h.{parts[2]}.{parts[3]}"
    if parts[0] == "transformer":
        return parts[1]
    return parts[0]


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def layer_stats(named_params, before: dict) -> "OrderedDict[str, dict]":
    """Per layer: grad (the gradient norm, None when no parameter got one) and ratio (update / weight norm)."""
    layers: OrderedDict[str, dict] = OrderedDict()
    for name, p in named_params:
        entry = layers.setdefault(layer_of(name), {"grads": [], "deltas": [], "weights": []})
        if p.grad is not None:
            entry["grads"].append(p.grad)
        entry["deltas"].append(p.detach() - before[name])
        entry["weights"].append(before[name])
    stats = OrderedDict()
    for layer, e in layers.items():
        weight = _norm(e["weights"])
        stats[layer] = {"grad": _norm(e["grads"]) if e["grads"] else None,
                        "ratio": _norm(e["deltas"]) / weight if weight > 0 else None}
    return stats


def _one_step(tracer, model, optimizers, inputs, targets, step: int):
    """Forward, backward, optimizer step; (loss, per-layer stats)."""
    named = list(model.named_parameters())
    before = {n: p.detach().clone() for n, p in named}
    loss = tracer.guard(f"the forward pass (step {step})", model, inputs, targets)
    tracer.guard(f"backward (step {step})", loss.backward)
    for opt in optimizers:
        tracer.guard(f"the optimizer step (step {step})", opt.step)
    stats = layer_stats(named, before)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return float(loss.detach()), stats


def _cell(value: float | None, none: str) -> str:
    return none if value is None else f"{value:.2e}"


def _table(history: list) -> Table:
    table = Table(title="gradient norm |∇| and update/weight Δ/W per layer, after each step", title_justify="left")
    table.add_column("layer")
    for step, _ in enumerate(history, 1):
        table.add_column(f"|∇| {step}", justify="right")
        table.add_column(f"Δ/W {step}", justify="right")
    for layer in history[0][1]:
        cells = []
        for _, stats in history:
            s = stats[layer]
            grad = "[red]none[/red]" if s["grad"] is None else ("[dim]0[/dim]" if s["grad"] == 0 else _cell(s["grad"], ""))
            cells += [grad, _cell(s["ratio"], "[dim]—[/dim]")]
        table.add_row(escape(layer), *cells)
    return table


def trace_grad(console: Console, args) -> bool:
    """Print the gradient trace; True when some part of it could not run."""
    import torch

    setup = open_trace(console, args, "trace --grad", extra_tokens=1)  # one more token: the last one's target
    tracer, module, ids = setup.tracer, setup.module, setup.ids
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    config = tracer.guard("GPTConfig", module.GPTConfig, **setup.kwargs)
    torch.manual_seed(args.seed)
    model = tracer.guard("building the model", module.GPT, config)
    tracer.guard("init_weights", model.init_weights)
    optimizers = tracer.guard("setup_optimizers", model.setup_optimizers)
    model.train()
    history = [_one_step(tracer, model, optimizers, inputs, targets, step) for step in range(1, args.steps + 1)]
    console.print("loss before each step: " + ", ".join(f"{loss:.4f}" for loss, _ in history))
    console.print(_table(history))
    console.print("[dim]|∇| 0 at step 1 is expected below a layer that starts at zero (lm_head, the output "
                  "projections): no signal flows back through a zero matrix until the optimizer has moved it. "
                  "none: no gradient reached the layer at all.[/dim]")
    return tracer.failed

"""AdamW written out from the paper, AdamW for torchrun, and the fastest AdamW kernel torch has for a device.

`adamw_step` and `AdamW`: Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", 2019, Algorithm 2 with Adam's bias correction), one tensor at a time, readable top to bottom.
It computes what `torch.optim.AdamW` computes (tests/test_track_optimizer.py compares them); the training
scripts use torch's, whose kernels are faster, and the optimizer track's learner writes this one
(learner_adamw.py).

`DistAdamW`: nanochat does not wrap the model in DistributedDataParallel; the two distributed optimizers (this
one and `nanochat.muon.DistMuon`) are where gradients meet. It averages the gradients across ranks, then takes
the ordinary AdamW step everywhere, so every rank ends the step with identical parameters.

`with_fused_kernel(optimizer)`: torch's fused AdamW (one kernel over all parameters) exists for CUDA and, since
torch 2.4, for CPU too; a model's `setup_optimizers` may not ask for it (the reference only does on CUDA, and a
learner's file may not at all), so the training script hands its AdamW through this to get it wherever torch
offers it. The update is the same AdamW, up to floating-point rounding.
"""

import inspect
import math

import torch
import torch.distributed as dist


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update of one tensor, in place. `step` counts updates from 1 (for the bias correction)."""
    # decoupled weight decay: shrink the weights directly, instead of adding weight_decay * param to the gradient
    param.mul_(1 - lr * weight_decay)
    # moving averages of the gradient and of its square (first and second moments)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    # both averages start at zero, so early on they are too small by these factors: divide them out
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


class AdamW(torch.optim.Optimizer):
    """AdamW over any parameters, with torch.optim.AdamW's arguments and defaults (no amsgrad, no fused kernels)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"AdamW: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                adamw_step(p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group["lr"],
                           beta1, beta2, group["eps"], group["weight_decay"])
        return loss


class DistAdamW(torch.optim.AdamW):
    @torch.no_grad()
    def step(self, closure=None):
        world_size = dist.get_world_size()
        grads = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        handles = [dist.all_reduce(g, op=dist.ReduceOp.SUM, async_op=True) for g in grads]
        for h in handles:
            h.wait()
        for g in grads:
            g.div_(world_size)
        return super().step(closure)


def with_fused_kernel(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same AdamW (class, param groups, hyperparameters) built with fused=True, when torch has a fused kernel
    for the parameters' device and dtype; otherwise `optimizer` itself. Call it before the first step or any
    load_state_dict (a fresh optimizer has no state to carry over)."""
    if not isinstance(optimizer, torch.optim.AdamW) or optimizer.state:
        return optimizer
    if all(group.get("fused") for group in optimizer.param_groups):
        return optimizer
    # the groups keep their own settings (lr, betas, initial_lr, ...) but take the kernel choice from fused=True
    groups = [{k: v for k, v in group.items() if k not in ("fused", "foreach")} for group in optimizer.param_groups]
    accepted = inspect.signature(type(optimizer).__init__).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k not in ("fused", "foreach")}
    try:
        return type(optimizer)(groups, **{**defaults, "fused": True})
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype in this torch
        return optimizer

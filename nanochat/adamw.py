"""AdamW for torchrun, and the fastest AdamW kernel torch has for a device.

`DistAdamW`: nanochat does not wrap the model in DistributedDataParallel; the two distributed optimizers (this
one and `nanochat.muon.DistMuon`) are where gradients meet. It averages the gradients across ranks, then takes
the ordinary AdamW step everywhere, so every rank ends the step with identical parameters.

`with_fused_kernel(optimizer)`: torch's fused AdamW (one kernel over all parameters) exists for CUDA and, since
torch 2.4, for CPU too; a model's `setup_optimizers` may not ask for it (the reference only does on CUDA, and a
learner's file may not at all), so the training script hands its AdamW through this to get it wherever torch
offers it. The update is the same AdamW, up to floating-point rounding.
"""

import inspect

import torch
import torch.distributed as dist


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

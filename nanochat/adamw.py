"""AdamW for torchrun: average the gradients across ranks, then take the ordinary AdamW step everywhere.

nanochat does not wrap the model in DistributedDataParallel; the two distributed optimizers (this one and
`nanochat.muon.DistMuon`) are where gradients meet. Every rank ends the step with identical parameters.
"""

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

"""Muon: momentum SGD whose update is orthogonalised by a Newton–Schulz iteration (Keller Jordan, 2024).

For a weight matrix W with gradient G, Muon keeps a momentum buffer, takes the (Nesterov) momentum direction M,
and replaces it by the nearest semi-orthogonal matrix, roughly U V^T from the SVD M = U S V^T, computed with five
steps of a quintic Newton–Schulz iteration instead of an SVD. Every direction of the update then gets a similar
step size, however skewed the raw gradient's singular values were. Used for the 2-D matrices inside the blocks;
embeddings and the head stay with AdamW.

`DistMuon` is the same optimizer under torchrun: gradients are averaged across ranks, each rank orthogonalises
the parameters it owns (round-robin), and the new values are broadcast from their owner.
"""

import torch
import torch.distributed as dist

# coefficients of the quintic iteration, tuned so that singular values land near 1 in five steps
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise G (..., m, n): returns a matrix with singular values close to 1."""
    assert G.ndim >= 2
    a, b, c = NS_COEFFS
    # bf16 is plenty for this iteration on GPUs; CPUs are slow at bf16 matmuls, so they stay in fp32
    X = G.bfloat16() if G.is_cuda else G.float()
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    # scale so the spectral norm is at most 1 (the Frobenius norm bounds it)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if transposed:
        X = X.mT
    return X.to(G.dtype)


def muon_update(p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
    """One Muon step for one matrix, in place."""
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = torch.zeros_like(grad)
    buf = state["momentum_buffer"]
    buf.lerp_(grad, 1 - group["momentum"])
    g = grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
    g = zeropower_via_newtonschulz5(g, steps=group["ns_steps"])
    # tall matrices get a larger step so the per-element update size matches wide ones
    p.add_(g, alpha=-group["lr"] * max(1, p.size(-2) / p.size(-1)) ** 0.5)


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5):
        params = list(params)
        for p in params:
            if p.ndim != 2:
                raise ValueError(f"Muon only takes 2-D matrices, got a parameter of shape {tuple(p.shape)}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        # one group per matrix size (kept in a fixed order), as nanochat does
        sizes = sorted({p.numel() for p in params})
        groups = [dict(params=[p for p in params if p.numel() == size]) for size in sizes]
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    muon_update(p, p.grad, self.state[p], group)


class DistMuon(Muon):
    """Muon under torchrun: average gradients, orthogonalise each matrix on one rank, broadcast the result."""

    @torch.no_grad()
    def step(self):
        rank, world_size = dist.get_rank(), dist.get_world_size()
        params = [p for group in self.param_groups for p in group["params"]]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        handles = [dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, async_op=True) for p in params]
        for h in handles:
            h.wait()
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if i % world_size == rank:
                    muon_update(p, p.grad.div_(world_size), self.state[p], group)
                i += 1
        handles = [dist.broadcast(p.data, src=i % world_size, async_op=True) for i, p in enumerate(params)]
        for h in handles:
            h.wait()

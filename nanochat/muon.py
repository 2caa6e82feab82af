"""Muon: momentum SGD whose update is orthogonalised by a Newton–Schulz iteration (Keller Jordan, 2024).

For a weight matrix W with gradient G, Muon keeps a momentum buffer, takes the (Nesterov) momentum direction M,
and replaces it by the nearest semi-orthogonal matrix, roughly U V^T from the SVD M = U S V^T, computed with five
steps of a quintic Newton–Schulz iteration instead of an SVD. Every direction of the update then gets a similar
step size, however skewed the raw gradient's singular values were. Used for the 2-D matrices inside the blocks;
embeddings and the head stay with AdamW.

Speed: matrices of the same shape are orthogonalised together, as one batched iteration (one set of matrix
products for all the q/k/v/proj matrices of the model, say). On CUDA the iteration runs in bfloat16 and is
torch.compile'd. On CPU it stays in float32: on CPUs without native bf16 matrix units (AVX2 machines such as
the one it was measured on) bf16 products are several times slower than fp32 ones. Both are attributes of the
optimizer (`ns_dtype`, `ns_compile`) that a training script may set before the first step.

`DistMuon` is the same optimizer under torchrun: gradients are averaged across ranks, each rank orthogonalises
the parameters it owns (round-robin), and the new values are broadcast from their owner.
"""

import torch
import torch.distributed as dist

# coefficients of the quintic iteration, tuned so that singular values land near 1 in five steps
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately orthogonalise G (..., m, n): returns matrices with singular values close to 1.

    The iteration runs in `dtype` (default: bf16 on cuda, fp32 elsewhere); the result has G's dtype."""
    assert G.ndim >= 2
    a, b, c = NS_COEFFS
    if dtype is None:
        dtype = default_ns_dtype(G.device)
    X = G.to(dtype)
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


def default_ns_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (tensor cores); fp32 on CPU and MPS (measured faster than bf16 on an AVX2 CPU)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


_compiled_ns = None


def compiled_newtonschulz5():
    """zeropower_via_newtonschulz5 under torch.compile, built once per process (compiled per shape on first use)."""
    global _compiled_ns
    if _compiled_ns is None:
        _compiled_ns = torch.compile(zeropower_via_newtonschulz5, dynamic=False, fullgraph=True)
    return _compiled_ns


def update_scale(shape: torch.Size) -> float:
    """Tall matrices get a larger step so the per-element update size matches wide ones."""
    return max(1, shape[-2] / shape[-1]) ** 0.5


def muon_update(params: list, grads: list, states: list, group: dict, ns_dtype: torch.dtype, ns_compile: bool):
    """One Muon step for a list of matrices, in place: momentum, then one batched Newton–Schulz per shape."""
    for state, grad in zip(states, grads):
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
    bufs = [state["momentum_buffer"] for state in states]
    torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
    directions = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs
    orthogonalise = compiled_newtonschulz5() if ns_compile else zeropower_via_newtonschulz5
    by_shape = {}
    for p, d in zip(params, directions):
        by_shape.setdefault(p.shape, []).append((p, d))
    for shape, pairs in by_shape.items():
        stacked = torch.stack([d for _, d in pairs])
        update = orthogonalise(stacked, steps=group["ns_steps"], dtype=ns_dtype)
        torch._foreach_add_([p for p, _ in pairs], list(update.unbind(0)), alpha=-group["lr"] * update_scale(shape))


class Muon(torch.optim.Optimizer):
    """Muon over 2-D matrices. `ns_dtype` and `ns_compile` (attributes, default: by the parameters' device)
    choose the precision of the Newton–Schulz iteration and whether it is torch.compile'd."""

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
        device = params[0].device if params else torch.device("cpu")
        self.ns_dtype = default_ns_dtype(device)
        self.ns_compile = device.type == "cuda"

    def _update(self, group, params):
        if params:
            muon_update(params, [p.grad for p in params], [self.state[p] for p in params], group,
                        self.ns_dtype, self.ns_compile)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            self._update(group, [p for p in group["params"] if p.grad is not None])


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
            owned = []
            for p in group["params"]:
                if i % world_size == rank:
                    p.grad.div_(world_size)
                    owned.append(p)
                i += 1
            self._update(group, owned)
        handles = [dist.broadcast(p.data, src=i % world_size, async_op=True) for i, p in enumerate(params)]
        for h in handles:
            h.wait()

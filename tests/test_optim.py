"""Muon and AdamW as the model uses them: orthogonalised updates, lower losses, the grouping by matrix size, and
the fast paths (bf16 Newton–Schulz, matrices orthogonalised as one batch, torch's fused AdamW on CPU).
(The distributed forms are tested under a real torchrun in test_ddp.py.)"""

import pytest
import torch

from nanochat.adamw import with_fused_kernel
from nanochat.gpt import GPT, GPTConfig
from nanochat.muon import Muon, default_ns_dtype, zeropower_via_newtonschulz5


def with_spectrum(rows, cols, singular_values, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=g))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=g))
    return U @ torch.diag(singular_values) @ V.T


@pytest.mark.parametrize("shape", [(96, 32), (32, 96), (256, 64)], ids=["tall", "wide", "very-tall"])
def test_newton_schulz_output_is_near_orthogonal(shape):
    torch.manual_seed(0)
    G = torch.randn(*shape) * 3.0
    X = zeropower_via_newtonschulz5(G)
    assert X.shape == G.shape and X.dtype == G.dtype
    s = torch.linalg.svdvals(X)
    # five quintic steps put every singular value in a band around 1 (about 0.68 to 1.2), not exactly at 1
    assert s.min() > 0.5 and s.max() < 1.5, (s.min().item(), s.max().item())
    # and the directions are those of the polar factor U V^T
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cosine = (X * (U @ Vh)).sum() / (X.norm() * (U @ Vh).norm())
    assert cosine > 0.95


def test_newton_schulz_evens_out_a_skewed_spectrum():
    # singular values spread over two orders of magnitude all come out near 1
    G = with_spectrum(64, 32, torch.logspace(0, -2, 32))
    s = torch.linalg.svdvals(zeropower_via_newtonschulz5(G))
    assert s.min() > 0.5 and s.max() < 1.5
    # the scale of the input does not matter
    s_big = torch.linalg.svdvals(zeropower_via_newtonschulz5(1000.0 * G))
    torch.testing.assert_close(s_big, s, atol=1e-4, rtol=1e-4)


def test_muon_step_without_momentum_is_the_orthogonalised_gradient():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(48, 16))
    W0 = W.detach().clone()
    W.grad = torch.randn(48, 16)
    opt = Muon([W], lr=0.1, momentum=0.0, nesterov=False)
    opt.step()
    # tall matrices get their step scaled by sqrt(rows / cols)
    expected = W0 - 0.1 * (48 / 16) ** 0.5 * zeropower_via_newtonschulz5(W.grad)
    torch.testing.assert_close(W.detach(), expected)


def test_muon_decreases_a_least_squares_loss():
    torch.manual_seed(0)
    X = torch.randn(256, 32)
    W_true = 0.1 * torch.randn(32, 24)
    Y = X @ W_true
    W = torch.nn.Parameter(torch.zeros(32, 24))
    # Muon's steps have a fixed size (set by lr), so the target is kept within reach of 100 steps
    opt = Muon([W], lr=0.02, momentum=0.9)
    losses = []
    for _ in range(100):
        loss = ((X @ W - Y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]


def test_muon_takes_only_matrices_and_groups_them_by_size():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(5))])
    params = [torch.nn.Parameter(torch.zeros(s)) for s in [(8, 4), (4, 8), (16, 16), (2, 16)]]
    opt = Muon(params)
    sizes = [[p.numel() for p in g["params"]] for g in opt.param_groups]
    assert sizes == [[32, 32, 32], [256]]


def test_model_optimizers_lower_the_loss_in_a_few_steps():
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=16, vocab_size=50, n_layer=2, n_head=2, n_kv_head=1, n_embd=64))
    model.init_weights()
    optimizers = model.setup_optimizers()
    data = torch.randint(0, 50, (8, 17))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    losses = []
    for _ in range(10):
        loss = model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


# ---------------------------------------------------------------------------------------------------------------
# the fast paths: bf16 iteration, batched matrices, fused AdamW

def test_newton_schulz_in_bfloat16_stays_near_orthogonal():
    # the CUDA default precision; run here on CPU, which has the same bf16 rounding
    G = with_spectrum(128, 48, torch.logspace(0, -2, 48), seed=1)
    X = zeropower_via_newtonschulz5(G, dtype=torch.bfloat16)
    assert X.dtype == G.dtype
    s = torch.linalg.svdvals(X)
    assert s.min() > 0.5 and s.max() < 1.5, (s.min().item(), s.max().item())
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    cosine = (X * (U @ Vh)).sum() / (X.norm() * (U @ Vh).norm())
    assert cosine > 0.95
    # and it is close to the fp32 result, not merely orthogonal
    assert (X - zeropower_via_newtonschulz5(G, dtype=torch.float32)).norm() / X.norm() < 0.05


def test_default_precision_is_bf16_on_cuda_only():
    assert default_ns_dtype(torch.device("cuda")) == torch.bfloat16
    assert default_ns_dtype(torch.device("cpu")) == torch.float32
    assert Muon([torch.nn.Parameter(torch.zeros(4, 4))]).ns_dtype == torch.float32


def test_a_stack_of_matrices_is_orthogonalised_one_by_one():
    torch.manual_seed(0)
    G = torch.randn(3, 64, 16)
    batched = zeropower_via_newtonschulz5(G)
    for i in range(3):
        torch.testing.assert_close(batched[i], zeropower_via_newtonschulz5(G[i]), atol=1e-5, rtol=1e-4)


def reference_muon_step(W, grad, buf, lr, momentum):
    """Muon as written in the paper, one matrix at a time (Nesterov)."""
    buf.lerp_(grad, 1 - momentum)
    g = grad.lerp(buf, momentum)
    return W - lr * max(1, W.size(0) / W.size(1)) ** 0.5 * zeropower_via_newtonschulz5(g)


def test_batched_muon_matches_the_one_matrix_at_a_time_update():
    # the shapes of a block: square q/k/v/proj, tall c_fc, wide mlp c_proj (same numel, one group, two stacks)
    torch.manual_seed(0)
    shapes = [(32, 32), (32, 32), (128, 32), (32, 128), (128, 32)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    expected = [p.detach().clone() for p in params]
    bufs = [torch.zeros(s) for s in shapes]
    opt = Muon(params, lr=0.05, momentum=0.9)
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        expected = [reference_muon_step(W, g, b, 0.05, 0.9) for W, g, b in zip(expected, grads, bufs)]
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, atol=1e-5, rtol=1e-4)


def test_fused_adamw_on_cpu_takes_the_same_steps():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 16)), torch.nn.Parameter(torch.randn(16, 64))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    kwargs = dict(betas=(0.8, 0.95), eps=1e-10, weight_decay=0.01)
    plain = torch.optim.AdamW([dict(params=twins[:1], lr=0.01), dict(params=twins[1:], lr=0.002)], **kwargs)
    adamw = torch.optim.AdamW([dict(params=params[:1], lr=0.01), dict(params=params[1:], lr=0.002)], **kwargs)
    for group in adamw.param_groups:
        group["initial_lr"] = group["lr"]
    fused = with_fused_kernel(adamw)
    assert fused is not adamw and all(g["fused"] for g in fused.param_groups)
    assert [g["initial_lr"] for g in fused.param_groups] == [0.01, 0.002]  # the groups keep their own keys
    assert fused.defaults["betas"] == (0.8, 0.95) and fused.defaults["weight_decay"] == 0.01
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        for p, t, g in zip(params, twins, grads):
            p.grad, t.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for p, t in zip(params, twins):
        torch.testing.assert_close(p.detach(), t.detach(), atol=1e-6, rtol=1e-5)


def test_with_fused_kernel_leaves_other_optimizers_and_started_ones_alone():
    p = torch.nn.Parameter(torch.randn(4, 4))
    sgd = torch.optim.SGD([p], lr=0.1)
    assert with_fused_kernel(sgd) is sgd
    adamw = torch.optim.AdamW([p])
    p.grad = torch.ones_like(p)
    adamw.step()  # it has state now: rebuilding it would lose the moments
    assert with_fused_kernel(adamw) is adamw

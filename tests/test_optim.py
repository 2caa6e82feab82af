"""Muon and AdamW as the model uses them: orthogonalised updates, lower losses, the grouping by matrix size.
(The distributed forms are tested under a real torchrun in test_ddp.py.)"""

import pytest
import torch

from nanochat.gpt import GPT, GPTConfig
from nanochat.muon import Muon, zeropower_via_newtonschulz5


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

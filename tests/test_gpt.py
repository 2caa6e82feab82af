"""The reference GPT: shapes through every module, the architecture's promises, loss at init, overfitting,
and loading the model class from a learner's file (`--model path`)."""

import math
import shutil
import textwrap

import pytest
import torch

from nanochat import gpt as gpt_module
from nanochat import model_source
from nanochat.gpt import GPT, MLP, Block, CausalSelfAttention, GPTConfig, apply_rotary_emb, norm
from nanochat.muon import Muon


def tiny_config(**overrides):
    cfg = dict(sequence_len=32, vocab_size=64, n_layer=2, n_head=4, n_kv_head=4, n_embd=64)
    cfg.update(overrides)
    return GPTConfig(**cfg)


def rotary(model, T):
    return model.cos[:, :T], model.sin[:, :T]


@pytest.mark.parametrize("n_kv_head", [1, 2, 4], ids=["MQA", "GQA", "MHA"])
def test_attention_shapes_with_shared_kv_heads(n_kv_head):
    torch.manual_seed(0)
    config = tiny_config(n_kv_head=n_kv_head)
    model = GPT(config)
    attn = model.transformer.h[0].attn
    assert isinstance(attn, CausalSelfAttention)
    head_dim = config.n_embd // config.n_head
    assert attn.c_q.weight.shape == (config.n_head * head_dim, config.n_embd)
    assert attn.c_k.weight.shape == (n_kv_head * head_dim, config.n_embd)
    assert attn.c_v.weight.shape == (n_kv_head * head_dim, config.n_embd)
    x = torch.randn(3, 10, config.n_embd)
    y = attn(x, rotary(model, 10), None)
    assert y.shape == (3, 10, config.n_embd)


def test_attention_is_causal():
    # changing a later token must not change the outputs at earlier positions
    torch.manual_seed(0)
    config = tiny_config(n_kv_head=2)
    model = GPT(config)
    attn = model.transformer.h[0].attn
    x = torch.randn(1, 12, config.n_embd)
    x2 = x.clone()
    x2[:, 8:] = torch.randn(1, 4, config.n_embd)
    y, y2 = attn(x, rotary(model, 12), None), attn(x2, rotary(model, 12), None)
    torch.testing.assert_close(y[:, :8], y2[:, :8])
    assert not torch.allclose(y[:, 8:], y2[:, 8:])


def test_mlp_is_4x_relu_squared_without_bias():
    torch.manual_seed(0)
    config = tiny_config()
    mlp = MLP(config)
    assert mlp.c_fc.weight.shape == (4 * config.n_embd, config.n_embd)
    assert mlp.c_proj.weight.shape == (config.n_embd, 4 * config.n_embd)
    x = torch.randn(2, 5, config.n_embd)
    expected = torch.relu(x @ mlp.c_fc.weight.T).square() @ mlp.c_proj.weight.T
    torch.testing.assert_close(mlp(x), expected)


def test_block_shape_and_identity_at_init():
    torch.manual_seed(0)
    config = tiny_config()
    model = GPT(config)
    model.init_weights()
    block = model.transformer.h[0]
    assert isinstance(block, Block)
    x = torch.randn(2, 7, config.n_embd)
    # output projections start at zero, so every block starts as the identity on the residual stream
    torch.testing.assert_close(block(x, rotary(model, 7), None), x)


def test_gpt_logits_and_loss_shapes():
    torch.manual_seed(0)
    config = tiny_config(n_kv_head=1)
    model = GPT(config)
    model.init_weights()
    idx = torch.randint(0, config.vocab_size, (3, 9))
    logits = model(idx)
    assert logits.shape == (3, 9, config.vocab_size)
    loss = model(idx, idx)
    assert loss.ndim == 0
    per_token = model(idx, idx, loss_reduction="none")
    assert per_token.shape == (27,)
    torch.testing.assert_close(per_token.mean(), loss)


def test_logits_are_softcapped_at_15():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    model.init_weights()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 100.0)
    logits = model(torch.randint(0, 64, (2, 8)))
    assert logits.abs().max() <= 15.0
    assert logits.abs().max() > 14.0


def test_no_biases_and_state_dict_names():
    model = GPT(tiny_config())
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    keys = set(model.state_dict())
    assert "transformer.wte.weight" in keys and "lm_head.weight" in keys
    assert "transformer.h.1.attn.c_q.weight" in keys and "transformer.h.1.mlp.c_fc.weight" in keys
    # the rotary tables are buffers, but not saved in checkpoints
    assert "cos" not in keys and "sin" not in keys


def test_norm_is_parameter_free_rms_norm():
    x = torch.randn(4, 6, 32) * 7 + 3
    y = norm(x)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(4, 6), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm(2.5 * x), y, atol=1e-5, rtol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    model = GPT(tiny_config())
    cos, sin = model.cos, model.sin
    torch.manual_seed(0)
    q = torch.randn(1, 1, 1, 16)
    k = torch.randn(1, 1, 1, 16)

    def rotated(x, pos):
        return apply_rotary_emb(x, cos[:, pos:pos + 1], sin[:, pos:pos + 1])

    s1 = (rotated(q, 5) * rotated(k, 2)).sum()
    s2 = (rotated(q, 13) * rotated(k, 10)).sum()
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)
    # a rotation keeps the length
    torch.testing.assert_close(rotated(q, 7).norm(), q.norm())


def test_loss_at_init_is_ln_vocab():
    torch.manual_seed(0)
    config = tiny_config(vocab_size=300)
    model = GPT(config)
    model.init_weights()
    idx = torch.randint(0, config.vocab_size, (4, 16))
    loss = model(idx, idx.roll(-1, dims=1)).item()
    assert abs(loss - math.log(config.vocab_size)) < 0.05


def test_setup_optimizers_covers_every_parameter_once():
    config = tiny_config(n_embd=128, n_head=2, n_kv_head=1)
    model = GPT(config)
    adamw, muon = model.setup_optimizers(unembedding_lr=0.004, embedding_lr=0.2, matrix_lr=0.02)
    assert isinstance(muon, Muon)
    adam_params = [p for g in adamw.param_groups for p in g["params"]]
    muon_params = [p for g in muon.param_groups for p in g["params"]]
    ids = [id(p) for p in adam_params + muon_params]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert len(set(ids)) == len(ids)
    scale = (128 / 768) ** -0.5
    lrs = sorted(g["lr"] for g in adamw.param_groups)
    assert lrs == pytest.approx(sorted([0.004 * scale, 0.2 * scale]))
    assert all(g["initial_lr"] == g["lr"] for opt in (adamw, muon) for g in opt.param_groups)


def test_overfits_a_small_fixed_set_of_sequences():
    torch.manual_seed(0)
    config = tiny_config(n_layer=2, n_embd=64, n_head=1, n_kv_head=1, vocab_size=64)
    model = GPT(config)
    model.init_weights()
    data = torch.randint(0, config.vocab_size, (4, 33))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    optimizers = model.setup_optimizers()
    losses = []
    for _ in range(300):
        loss = model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if losses[-1] < 0.1:
            break
    assert losses[0] == pytest.approx(math.log(64), abs=0.05)
    assert losses[-1] < 0.1, f"loss only reached {losses[-1]:.3f} after {len(losses)} steps"


# --- the model class from a learner's file -------------------------------------------------------------


def test_reference_source_is_nanochat_gpt():
    assert model_source.load_model_module("reference") is gpt_module
    assert model_source.load_model_module(None) is gpt_module
    assert model_source.canonical("reference") == "reference"
    assert "reference" in model_source.describe("reference")


def test_verbatim_copy_of_gpt_is_a_valid_learner_file(tmp_path):
    path = tmp_path / "my_gpt.py"
    shutil.copy(gpt_module.__file__, path)
    module = model_source.load_model_module(str(path))
    assert module is not gpt_module and module.__file__ == str(path)
    assert str(path) in model_source.describe(str(path))
    config = tiny_config()
    torch.manual_seed(0)
    ref = GPT(config)
    torch.manual_seed(0)
    learner = module.GPT(module.GPTConfig(**vars(config)))
    assert type(learner).__module__ != GPT.__module__
    idx = torch.randint(0, 64, (2, 8))
    torch.testing.assert_close(learner(idx), ref(idx))


def test_learner_file_is_imported_fresh_each_time(tmp_path):
    path = tmp_path / "gpt.py"
    path.write_text("class GPTConfig: pass\nclass GPT:\n    VERSION = 1\n")
    first = model_source.load_model_module(str(path))
    path.write_text("class GPTConfig: pass\nclass GPT:\n    VERSION = 2\n")
    second = model_source.load_model_module(str(path))
    assert (first.GPT.VERSION, second.GPT.VERSION) == (1, 2)
    assert first.__name__ != second.__name__


def test_learner_file_errors_are_clear(tmp_path):
    with pytest.raises(model_source.ModelSourceError, match="does not exist"):
        model_source.load_model_module(str(tmp_path / "nope.py"))
    with pytest.raises(model_source.ModelSourceError, match="directory"):
        model_source.load_model_module(str(tmp_path))

    bad = tmp_path / "syntax.py"
    bad.write_text("import torch\n\nclass GPT:\n    def forward(self x):\n        pass\n")
    with pytest.raises(model_source.ModelSourceError) as e:
        model_source.load_model_module(str(bad))
    assert f"{bad}:4" in str(e.value) and "syntax error" in str(e.value)

    crash = tmp_path / "crash.py"
    crash.write_text(textwrap.dedent("""\
        import torch
        import no_such_module_for_nanochat
    """))
    with pytest.raises(model_source.ModelSourceError) as e:
        model_source.load_model_module(str(crash))
    assert f"{crash}:2" in str(e.value) and "ModuleNotFoundError" in str(e.value)

    empty = tmp_path / "empty.py"
    empty.write_text("class GPTConfig:\n    pass\n")
    with pytest.raises(model_source.ModelSourceError, match="does not define GPT as a class"):
        model_source.load_model_module(str(empty))

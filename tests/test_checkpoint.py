"""Checkpoints: bit-equal round trips, a resumed run that continues the same loss curve, tag/step discovery
and what the user sees when a checkpoint is missing or damaged."""

import dataclasses
import json
import os
import shutil
import time

import pytest
import torch

from nanochat import checkpoint_manager as cm
from nanochat import gpt as gpt_module
from nanochat.checkpoint_manager import CheckpointError
from nanochat.gpt import GPT, GPTConfig

CONFIG = GPTConfig(sequence_len=16, vocab_size=64, n_layer=2, n_head=2, n_kv_head=1, n_embd=64)


class NotATensor:
    """Any pickled class instance: torch.load(weights_only=True) must refuse it."""


def new_model(seed=0, config=CONFIG):
    torch.manual_seed(seed)
    model = GPT(config)
    model.init_weights()
    return model


def meta_for(step, config=CONFIG, source="reference"):
    return {"model_config": dataclasses.asdict(config), "step": step, "model_source": source}


def train(model, optimizers, batches):
    losses = []
    for batch in batches:
        loss = model(batch[:, :-1].contiguous(), batch[:, 1:].contiguous())
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def save(model, directory, step, optimizers=None, config=CONFIG, source="reference"):
    optim = [o.state_dict() for o in optimizers] if optimizers else None
    cm.save_checkpoint(str(directory), step, model.state_dict(), optim, meta_for(step, config, source))


def test_round_trip_is_bit_equal_and_leaves_only_the_named_files(tmp_path):
    model = new_model()
    optimizers = model.setup_optimizers()
    data = torch.randint(0, 64, (2, 4, 17), generator=torch.Generator().manual_seed(0))
    train(model, optimizers, data)
    save(model, tmp_path, 2, optimizers)
    assert sorted(os.listdir(tmp_path)) == ["meta_000002.json", "model_000002.pt", "optim_000002_rank0.pt"]
    model_data, optim_data, meta = cm.load_checkpoint(str(tmp_path), 2, "cpu", load_optimizer=True)
    assert meta == json.loads(json.dumps(meta_for(2)))
    assert model_data.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(model_data[name], tensor), name
    muon_state = optim_data[1]["state"]
    assert muon_state and all("momentum_buffer" in s for s in muon_state.values())
    # without load_optimizer the optimizer file is not read
    assert cm.load_checkpoint(str(tmp_path), 2, "cpu")[1] is None


def test_build_model_restores_the_model_for_eval_and_train(tmp_path):
    model = new_model()
    with torch.no_grad():
        model.lm_head.weight.normal_()
    save(model, tmp_path, 5)
    rebuilt, tokenizer, meta = cm.build_model(str(tmp_path), 5, "cpu", "eval")
    assert not rebuilt.training and meta["step"] == 5
    assert tokenizer.get_vocab_size() > 256
    idx = torch.randint(0, 64, (2, 8))
    assert torch.equal(rebuilt(idx), model(idx))
    assert cm.build_model(str(tmp_path), 5, "cpu", "train")[0].training
    with pytest.raises(ValueError, match="mode"):
        cm.build_model(str(tmp_path), 5, "cpu", "generate")


def test_resume_continues_the_same_loss_curve(tmp_path):
    data = torch.randint(0, 64, (6, 4, 17), generator=torch.Generator().manual_seed(1))
    model = new_model()
    optimizers = model.setup_optimizers()
    train(model, optimizers, data[:3])
    save(model, tmp_path, 3, optimizers)
    uninterrupted = train(model, optimizers, data[3:])

    resumed_model, _, _ = cm.build_model(str(tmp_path), 3, "cpu", "train")
    resumed_optimizers = resumed_model.setup_optimizers()
    _, optim_data, _ = cm.load_checkpoint(str(tmp_path), 3, "cpu", load_optimizer=True)
    for opt, state in zip(resumed_optimizers, optim_data):
        opt.load_state_dict(state)
    resumed = train(resumed_model, resumed_optimizers, data[3:])
    assert resumed == uninterrupted  # exactly the same numbers
    for name, tensor in model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], tensor), name

    # without the optimizer state (momentum, Adam moments) the curve is different: the test can tell
    fresh_model, _, _ = cm.build_model(str(tmp_path), 3, "cpu", "train")
    assert train(fresh_model, fresh_model.setup_optimizers(), data[3:]) != uninterrupted


def test_compiled_model_prefixes_are_stripped(tmp_path):
    model = new_model()
    compiled_style = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    cm.save_checkpoint(str(tmp_path), 1, compiled_style, None, meta_for(1))
    assert not any(k.startswith("_orig_mod.") for k in torch.load(tmp_path / "model_000001.pt", weights_only=True))
    # files written by other tools with the prefix still load
    torch.save(compiled_style, tmp_path / "model_000002.pt")
    shutil.copy(tmp_path / "meta_000001.json", tmp_path / "meta_000002.json")
    rebuilt, _, _ = cm.build_model(str(tmp_path), 2, "cpu", "eval")
    assert torch.equal(rebuilt.lm_head.weight, model.lm_head.weight)


def test_bf16_weights_become_fp32_on_cpu(tmp_path):
    model = new_model()
    cm.save_checkpoint(str(tmp_path), 1, {k: v.bfloat16() for k, v in model.state_dict().items()}, None, meta_for(1))
    rebuilt, _, _ = cm.build_model(str(tmp_path), 1, "cpu", "eval")
    assert all(p.dtype == torch.float32 for p in rebuilt.parameters())
    torch.testing.assert_close(rebuilt.transformer.wte.weight, model.transformer.wte.weight, atol=0.02, rtol=0.01)


def test_model_source_in_meta_picks_the_learner_file_inside_the_current_dir(tmp_path, monkeypatch, capsys):
    learner_file = tmp_path / "learner_gpt.py"
    shutil.copy(gpt_module.__file__, learner_file)
    model = new_model()
    save(model, tmp_path / "ckpt", 1, source=str(learner_file))
    monkeypatch.chdir(tmp_path)  # the learner's workspace
    rebuilt, _, meta = cm.build_model(str(tmp_path / "ckpt"), 1, "cpu", "eval")
    assert type(rebuilt).__module__.startswith("nanochat_learner_")
    assert meta["model_source"] == str(learner_file)
    assert f"model code: {learner_file} (named by {tmp_path / 'ckpt' / 'meta_000001.json'})" in capsys.readouterr().err
    # an explicit model_source wins over the meta
    rebuilt, _, _ = cm.build_model(str(tmp_path / "ckpt"), 1, "cpu", "eval", model_source="reference")
    assert type(rebuilt) is GPT


EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


@pytest.mark.parametrize("named", ["absolute", "home", "symlink"])
def test_a_model_file_named_only_by_a_checkpoint_is_not_run_from_outside(tmp_path, monkeypatch, named):
    """Issue 11 item 9: a shared checkpoint whose meta names a .py file elsewhere must not run it."""
    outside, workspace, home = tmp_path / "elsewhere", tmp_path / "workspace", tmp_path / "home"
    for d in (outside, workspace, home):
        d.mkdir()
    marker = tmp_path / "pwned"
    evil = (home if named == "home" else outside) / "gpt.py"
    evil.write_text(EVIL.format(marker=str(marker)) + open(gpt_module.__file__).read())
    source = {"absolute": str(evil), "home": "~/gpt.py", "symlink": str(workspace / "link.py")}[named]
    if named == "symlink":
        os.symlink(evil, workspace / "link.py")  # inside by name, outside in fact
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(workspace)
    save(new_model(), workspace / "ckpt", 1, source=source)
    with pytest.raises(cm.model_sources.ModelSourceError, match="outside .*pass --model") as e:
        cm.build_model(str(workspace / "ckpt"), 1, "cpu", "eval")
    assert str(evil) in str(e.value) and "meta_000001.json" in str(e.value)
    assert not marker.exists()
    # the learner's explicit say: --model PATH, or a directory the caller vouches for
    cm.build_model(str(workspace / "ckpt"), 1, "cpu", "eval", model_source=str(evil))
    assert marker.read_text() == "ran"
    marker.unlink()
    cm.build_model(str(workspace / "ckpt"), 1, "cpu", "eval", trusted_dirs=[str(evil.parent)])
    assert marker.exists()


@pytest.mark.parametrize("saved, message", [
    ([1, 2, 3], "holds a list, not a model state dict"),
    ({"w": "text"}, "holds a dict, not a model state dict"),
    (torch.zeros(3), "holds a Tensor, not a model state dict"),
])
def test_a_model_file_that_is_not_a_state_dict_is_refused(tmp_path, saved, message):
    save(new_model(), tmp_path, 1)
    torch.save(saved, tmp_path / "model_000001.pt")
    with pytest.raises(CheckpointError, match=message) as e:
        cm.build_model(str(tmp_path), 1, "cpu", "eval")
    assert str(tmp_path / "model_000001.pt") in str(e.value)


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    model = new_model()
    with torch.no_grad():
        model.lm_head.weight[3, 5] = float("nan")
    save(model, tmp_path, 1)
    with pytest.raises(CheckpointError, match="lm_head.weight hold NaN or infinite values.*earlier step"):
        cm.build_model(str(tmp_path), 1, "cpu", "eval")


@pytest.mark.parametrize("vocab_size, message", [
    (10**9, r"builds transformer.wte.weight with shape \[1000000000, 64\] but the saved weights have \[64, 64\]"),
    (1e9, "no model can be built from its model_config"),
])
def test_a_meta_that_does_not_match_its_weights_is_refused_before_allocating(tmp_path, vocab_size, message):
    save(new_model(), tmp_path, 1)
    meta = json.loads((tmp_path / "meta_000001.json").read_text())
    meta["model_config"]["vocab_size"] = vocab_size
    (tmp_path / "meta_000001.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message) as e:
        cm.build_model(str(tmp_path), 1, "cpu", "eval")
    assert "meta_000001.json" in str(e.value)


def test_a_model_that_does_not_fit_the_checkpoint_is_a_clear_error(tmp_path):
    learner_file = tmp_path / "renamed.py"
    source = open(gpt_module.__file__).read().replace('"wte": nn.Embedding', '"embed": nn.Embedding')
    learner_file.write_text(source.replace("self.transformer.wte", "self.transformer.embed"))
    save(new_model(), tmp_path / "ckpt", 1)
    with pytest.raises(CheckpointError, match="does not fit") as e:
        cm.build_model(str(tmp_path / "ckpt"), 1, "cpu", "eval", model_source=str(learner_file))
    assert "model_000001.pt" in str(e.value) and "transformer.wte.weight" in str(e.value)


def test_find_last_step_and_largest_model(tmp_path):
    model = new_model()
    for step in (10, 2, 30):
        save(model, tmp_path / "d4", step)
    assert cm.find_last_step(str(tmp_path / "d4")) == 30
    for tag in ("d12", "d8"):
        (tmp_path / tag).mkdir()
        (tmp_path / tag / "model_000001.pt").touch()
    (tmp_path / "d20").mkdir()  # a run that never saved: skipped
    assert cm.find_largest_model(str(tmp_path)) == "d12"

    other = tmp_path / "named"
    for i, tag in enumerate(["older", "newest", "middle"]):
        (other / tag).mkdir(parents=True)
        (other / tag / "model_000001.pt").touch()
        stamp = time.time() - 100 + [0, 50, 25][i]
        os.utime(other / tag, (stamp, stamp))
    assert cm.find_largest_model(str(other)) == "newest"


def test_load_model_announces_a_guess_and_honours_tag_and_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    base = tmp_path / "base_checkpoints"
    for step in (10, 20):
        save(new_model(seed=step), base / "d4", step)
    one_layer = dataclasses.replace(CONFIG, n_layer=1)
    save(new_model(seed=99, config=one_layer), base / "d1", 7, config=one_layer)
    # the tokenizer is needed by build_model; share the session's instead of training another one here
    monkeypatch.setattr("nanochat.tokenizer.get_tokenizer", lambda: "the tokenizer")

    model, tokenizer, meta = cm.load_model("base", "cpu", "eval")
    out = capsys.readouterr().out
    assert f"loaded base checkpoint d4 step 20 from {base / 'd4'}" in out
    assert meta["step"] == 20 and tokenizer == "the tokenizer"
    assert torch.equal(model.lm_head.weight, new_model(seed=20).lm_head.weight)

    model, _, meta = cm.load_model("base", "cpu", "eval", model_tag="d4", step=10)
    assert meta["step"] == 10 and capsys.readouterr().out == ""
    model, _, meta = cm.load_model("base", "cpu", "eval", model_tag="d1")
    assert meta["step"] == 7 and model.config.n_layer == 1
    assert "loaded base checkpoint d1 step 7" in capsys.readouterr().out

    with pytest.raises(CheckpointError, match="no checkpoints in .*sft_checkpoints"):
        cm.load_model("sft", "cpu", "eval")
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 15 .*steps available: 10, 20"):
        cm.load_model("base", "cpu", "eval", model_tag="d4", step=15)
    with pytest.raises(CheckpointError, match="no checkpoint directory .*d99"):
        cm.load_model("base", "cpu", "eval", model_tag="d99")
    with pytest.raises(ValueError, match="unknown checkpoint phase"):
        cm.load_model("pretrain", "cpu", "eval")


def test_damaged_checkpoints_are_clear_errors_naming_the_file(tmp_path):
    model = new_model()
    optimizers = model.setup_optimizers()
    save(model, tmp_path, 1, optimizers)
    model_file = tmp_path / "model_000001.pt"

    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or incomplete") as e:
        cm.load_checkpoint(str(tmp_path), 1, "cpu")
    assert str(model_file) in str(e.value)

    # weights_only loading refuses pickled objects (which could run code)
    torch.save({"weights": NotATensor()}, model_file)
    with pytest.raises(CheckpointError, match=str(model_file)):
        cm.load_checkpoint(str(tmp_path), 1, "cpu")

    model_file.write_bytes(data)
    (tmp_path / "meta_000001.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="meta_000001.json is unreadable"):
        cm.load_checkpoint(str(tmp_path), 1, "cpu")
    (tmp_path / "meta_000001.json").unlink()
    with pytest.raises(CheckpointError, match="meta_000001.json is missing"):
        cm.load_checkpoint(str(tmp_path), 1, "cpu")

    save(model, tmp_path, 1, optimizers)
    with pytest.raises(CheckpointError, match="optim_000001_rank1.pt is missing"):
        cm.load_checkpoint(str(tmp_path), 1, "cpu", load_optimizer=True, rank=1)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no model_<step>.pt files"):
        cm.find_last_step(str(empty))
    with pytest.raises(CheckpointError, match="no model tags with checkpoints"):
        cm.find_largest_model(str(empty))


def test_a_crash_while_saving_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    model = new_model()
    save(model, tmp_path, 1)
    before = (tmp_path / "model_000001.pt").read_bytes()

    def crashing_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save(new_model(seed=1), tmp_path, 1)
    assert (tmp_path / "model_000001.pt").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["meta_000001.json", "model_000001.pt"]

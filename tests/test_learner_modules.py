"""Learner files beyond the GPT: the one loader (nanochat/model_source.py) that imports a learner's drop-in for a
reference module, and base_train's --optimizer/--dataloader/--training built on it.

A verbatim copy of a reference module must train exactly as the reference does (same losses); a file still
holding the skeleton's `raise NotImplementedError("TODO ...")` is refused before training, in one line that
names the TODO; a learner's crash mid-run is one line naming the file, line and function.
"""

import shutil
import textwrap

import pytest

from nanochat import model_source
from nanochat.model_source import DATALOADER, MODEL, MUON, TRAINING, LearnerFileError, load_learner

REPO_NANOCHAT = model_source.__file__.rsplit("/", 1)[0]

# a skeleton as `init --track` writes one: the exercise keeps its signature and docstring, its body is a TODO
MUON_SKELETON = '''\
"""My Muon."""
import torch


def zeropower_via_newtonschulz5(G, steps=5, dtype=None):
    """Orthogonalise G."""
    raise NotImplementedError("TODO: five quintic Newton-Schulz steps (lesson 09)")


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5):
        super().__init__(list(params), dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

    def step(self):
        raise NotImplementedError("TODO: momentum, then orthogonalise")
'''


def copy_reference(tmp_path, name, as_name):
    path = tmp_path / as_name
    shutil.copy(f"{REPO_NANOCHAT}/{name}", path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# the loader

@pytest.mark.parametrize("kind, file", [(MUON, "muon.py"), (DATALOADER, "dataloader.py"), (TRAINING, "training.py")])
def test_reference_and_verbatim_copies_load(tmp_path, kind, file):
    import importlib

    assert load_learner("reference", kind) is importlib.import_module(kind.reference)
    module = load_learner(str(copy_reference(tmp_path, file, f"learner_{file}")), kind)
    assert module.__name__.startswith(model_source.LEARNER_MODULE_PREFIX)
    assert all(callable(getattr(module, n)) for n in kind.classes + kind.functions)


def test_a_todo_is_refused_naming_it(tmp_path):
    path = tmp_path / "learner_muon.py"
    path.write_text(MUON_SKELETON)
    assert [(t.qualname, t.line) for t in model_source.todos_in(str(path))] == [
        ("zeropower_via_newtonschulz5", 7), ("Muon.step", 15)]
    with pytest.raises(LearnerFileError) as e:
        load_learner(str(path), MUON)
    message = str(e.value)
    assert message.startswith(f"{path}:7: zeropower_via_newtonschulz5 is still a TODO (TODO: five quintic")
    assert "--optimizer" in message and "\n" not in message
    # the GPT keeps loading with TODOs in it (the check and a partial training run name them when reached)
    gpt = tmp_path / "learner_gpt.py"
    gpt.write_text("class GPTConfig: pass\nclass GPT:\n    def forward(self):\n"
                   "        raise NotImplementedError('TODO: the forward pass')\n")
    assert load_learner(str(gpt), MODEL).GPT


def test_a_plain_not_implemented_error_is_not_a_todo(tmp_path):
    path = tmp_path / "learner_muon.py"
    path.write_text("class Muon:\n    def step(self):\n        raise NotImplementedError('sparse gradients')\n")
    assert model_source.todos_in(str(path)) == []
    assert load_learner(str(path), MUON).Muon


@pytest.mark.parametrize("content, expected", [
    ("def lr_multiplier(): pass\n", "does not define muon_momentum, accumulate_gradients, optimizer_step as function(s)"),
    ("def lr_multiplier(:\n", ":1: syntax error"),
    ("import no_such_module_anywhere\n", ":1: importing learner_training.py failed with ModuleNotFoundError"),
])
def test_broken_files_are_one_clear_error(tmp_path, content, expected):
    path = tmp_path / "learner_training.py"
    path.write_text(content)
    with pytest.raises(LearnerFileError) as e:
        load_learner(str(path), TRAINING)
    assert expected in str(e.value)
    assert "Traceback" not in str(e.value)


def test_missing_paths_name_the_flag(tmp_path):
    with pytest.raises(LearnerFileError, match="--dataloader .* does not exist; pass the path of your own "
                                               "nanochat/dataloader.py"):
        load_learner(str(tmp_path / "nope.py"), DATALOADER)
    with pytest.raises(LearnerFileError, match="is a directory"):
        load_learner(str(tmp_path), DATALOADER)


def test_a_crash_inside_a_learner_file_is_located(tmp_path):
    path = tmp_path / "learner_training.py"
    path.write_text(textwrap.dedent("""\
        def lr_multiplier(step, *args):
            return helper(step)

        def helper(step):
            return 1 / step

        muon_momentum = accumulate_gradients = optimizer_step = lr_multiplier
    """))
    module = load_learner(str(path), TRAINING)
    with pytest.raises(ZeroDivisionError) as e:
        module.lr_multiplier(0)
    assert model_source.learner_failure(e.value) == f"{path}:5 in helper: ZeroDivisionError: division by zero"
    try:
        1 / 0
    except ZeroDivisionError as exc:  # raised by no learner file: not theirs to hear about
        assert model_source.learner_failure(exc) is None


# ---------------------------------------------------------------------------------------------------------------
# base_train with the learner's files

TINY_RUN = ["--depth=2", "--max_seq_len=64", "--device_batch_size=2", "--total_batch_size=128",
            "--num_iterations=4", "--eval_every=-1", "--sample_every=-1", "--data=embedded"]


def base_train(tag, *extra):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "nanochat.scripts.base_train", *TINY_RUN, f"--model-tag={tag}",
                           *extra], capture_output=True, text=True, timeout=1800)


def losses_of(tag):
    import json
    import os

    path = os.path.join(os.environ["NANOCHAT_BASE_DIR"], "base_checkpoints", tag, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def test_verbatim_copies_train_exactly_as_the_reference(tmp_path):
    reference = base_train("learner_ref")
    assert reference.returncode == 0, reference.stderr
    files = {flag: copy_reference(tmp_path, name, f"learner_{name}")
             for flag, name in (("--optimizer", "muon.py"), ("--dataloader", "dataloader.py"),
                                ("--training", "training.py"))}
    result = base_train("learner_copies", *[x for flag, path in files.items() for x in (flag, str(path))])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"--optimizer {files['--optimizer']}" in result.stdout  # the banner says whose code runs
    assert losses_of("learner_copies") == losses_of("learner_ref")  # the same code: the same losses, exactly
    assert len(losses_of("learner_ref")) == 4


def test_a_todo_skeleton_is_refused_in_one_line(tmp_path):
    path = tmp_path / "learner_muon.py"
    path.write_text(MUON_SKELETON)
    result = base_train("learner_todo", "--optimizer", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {path}:7: zeropower_via_newtonschulz5 is still a TODO (TODO: five "
                                     f"quintic Newton-Schulz steps (lesson 09)); write it (nanochat-workbench check "
                                     f"learner_muon.py says what is left) or leave out --optimizer")


def test_a_crash_in_the_learners_step_is_one_line_naming_it(tmp_path):
    source = open(f"{REPO_NANOCHAT}/training.py").read()
    marker = "def lr_multiplier(step, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):\n"
    assert marker in source
    broken = source.replace(marker, marker + "    if step == 2:\n        return 1 / 0\n")
    path = tmp_path / "learner_training.py"
    path.write_text(broken)
    line = broken.splitlines().index("        return 1 / 0") + 1
    result = base_train("learner_crash", "--training", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (f"error: your code stopped training at {path}:{line} in lr_multiplier: "
                                     f"ZeroDivisionError: division by zero")
    assert "step 00001/00004" in result.stdout  # it trained until the step that crashed


def test_optimizers_are_rebuilt_from_the_learners_classes(tmp_path):
    import torch

    from nanochat import learner_code
    from nanochat.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(sequence_len=16, vocab_size=64, n_layer=2, n_head=1, n_kv_head=1, n_embd=32))
    model.init_weights()
    adamw, muon = model.setup_optimizers(matrix_lr=0.03)
    path = copy_reference(tmp_path, "muon.py", "learner_muon.py")
    code = learner_code.LearnerCode(training=None, dataloader=None, muon=load_learner(str(path), MUON))
    new_adamw, new_muon = learner_code.with_learner_optimizers([adamw, muon], code, ddp=False)
    assert new_adamw is adamw and type(new_muon) is code.muon.Muon and type(new_muon) is not type(muon)
    assert [p for g in new_muon.param_groups for p in g["params"]] == [p for g in muon.param_groups for p in g["params"]]
    assert all(g["lr"] == g["initial_lr"] == 0.03 for g in new_muon.param_groups)
    with pytest.raises(LearnerFileError, match="does not define DistMuon as a class, which torchrun needs"):
        learner_code.with_learner_optimizers([adamw, muon], learner_code.LearnerCode(
            None, None, muon=load_learner(str(write_module(tmp_path, "class Muon: pass\n")), MUON)), ddp=True)
    assert isinstance(new_adamw, torch.optim.AdamW)


def write_module(tmp_path, text, name="learner_partial.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_optimizer_files_are_recognised_by_their_names(tmp_path):
    import argparse

    from nanochat import learner_code

    muon = copy_reference(tmp_path, "muon.py", "mine_1.py")
    adamw = copy_reference(tmp_path, "adamw.py", "mine_2.py")
    args = argparse.Namespace(training=None, dataloader=None, optimizer=[str(adamw), str(muon)])
    code = learner_code.load(args)
    assert code.muon.__file__ == str(muon) and code.adamw.__file__ == str(adamw)
    assert learner_code.describe(code) == f"your code: --optimizer {adamw}, {muon}"
    neither = write_module(tmp_path, "def step(): pass\n", "mine_3.py")
    with pytest.raises(LearnerFileError, match="defines neither Muon .* nor AdamW"):
        learner_code.load(argparse.Namespace(training=None, dataloader=None, optimizer=[str(neither)]))
    with pytest.raises(LearnerFileError, match="a second nanochat/muon.py"):
        learner_code.load(argparse.Namespace(training=None, dataloader=None, optimizer=[str(muon), str(muon)]))


def test_the_learners_adamw_steps_like_torchs_alone_and_under_a_process_group(tmp_path):
    import torch
    import torch.distributed as dist

    from nanochat import learner_code
    from nanochat.gpt import GPT, GPTConfig

    def run(ddp):
        torch.manual_seed(0)
        model = GPT(GPTConfig(sequence_len=16, vocab_size=64, n_layer=1, n_head=1, n_kv_head=1, n_embd=32))
        model.init_weights()
        optimizers = model.setup_optimizers(embedding_lr=0.5, unembedding_lr=0.5)
        if ddp is not None:
            code = learner_code.LearnerCode(None, None, adamw=load_learner(str(path), model_source.ADAMW))
            optimizers = learner_code.with_learner_optimizers(optimizers, code, ddp=ddp)
        x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            model(x, x).backward()
            optimizers[0].step()
            model.zero_grad(set_to_none=True)
        return optimizers[0], model.lm_head.weight.detach().clone()

    path = copy_reference(tmp_path, "adamw.py", "learner_adamw.py")
    reference_opt, reference = run(None)
    learner_opt, learner = run(False)
    assert type(learner_opt).__name__ == "AdamW"  # the learner's class, from their file
    assert type(learner_opt).__module__.startswith(model_source.LEARNER_MODULE_PREFIX)
    assert [g["initial_lr"] for g in learner_opt.param_groups] == [g["initial_lr"] for g in reference_opt.param_groups]
    assert not torch.equal(reference, model_lm_head_init())  # the weights moved ...
    torch.testing.assert_close(learner, reference, atol=1e-6, rtol=0)  # ... as torch's AdamW moves them
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        dist_opt, dist_weights = run(True)  # the gradients go through an all-reduce first (one rank: unchanged)
    finally:
        dist.destroy_process_group()
    assert type(dist_opt).__name__ == "DistAdamW" and isinstance(dist_opt, learner_code.GradientAveraging)
    torch.testing.assert_close(dist_weights, reference, atol=1e-6, rtol=0)


def model_lm_head_init():
    import torch

    from nanochat.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=16, vocab_size=64, n_layer=1, n_head=1, n_kv_head=1, n_embd=32))
    model.init_weights()
    return model.lm_head.weight.detach().clone()


@pytest.mark.slow
def test_the_learners_optimizers_under_torchrun_follow_the_reference(tmp_path):
    """Two ranks (gloo, CPU): the learner's DistMuon and AdamW (behind GradientAveraging) against nanochat's
    DistMuon and DistAdamW: the same losses on every step (AdamW to rounding)."""
    import os
    import subprocess
    import sys

    from nanochat.tokenizer import get_tokenizer

    get_tokenizer()  # trained once into the session's base dir, before two ranks could race to train it
    muon = copy_reference(tmp_path, "muon.py", "learner_muon.py")
    adamw = copy_reference(tmp_path, "adamw.py", "learner_adamw.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)

    def torchrun(tag, *extra):
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 "-m", "nanochat.scripts.base_train", *TINY_RUN, "--device_batch_size=1",
                                 f"--model-tag={tag}", *extra], capture_output=True, text=True, timeout=900,
                                env=env, cwd=tmp_path)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return losses_of(tag)

    reference = torchrun("ddp_ref")
    learner = torchrun("ddp_learner", "--optimizer", str(muon), "--optimizer", str(adamw))
    assert len(reference) == 4
    assert learner == pytest.approx(reference, abs=1e-4)

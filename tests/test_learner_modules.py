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

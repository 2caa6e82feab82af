"""The learning instruments (`attention`, `profile`, `compare`) on the reference, a skeleton and a partial file.

Every command runs the model in an isolated child process, as a learner sees it, through `workbench.cli.main`.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from workbench.cli import main
from workbench.course.workspace import SKELETON_TEMPLATE
from workbench.instruments.attention import HeadKind, attention_weights, classify

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "nanochat" / "gpt.py"
SDPA_LINE = "y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=enable_gqa)"
# the same attention written out by hand: no call that the capture could record, so q/k/v are recomputed
MANUAL_LINE = ("g = self.n_head // self.n_kv_head; "
               "y = torch.softmax(q @ k.repeat_interleave(g, dim=1).transpose(-2, -1) / math.sqrt(q.size(-1)) "
               "+ torch.full((Tq, Tk), float('-inf')).triu(1), dim=-1) @ v.repeat_interleave(g, dim=1)")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def skeleton(tmp_path):
    path = tmp_path / "learner_gpt.py"
    shutil.copy(SKELETON_TEMPLATE, path)
    return path


@pytest.fixture
def partial(tmp_path):
    """The reference with hand-written attention, init_weights and generate still TODOs."""
    source = REFERENCE.read_text(encoding="utf-8")
    assert SDPA_LINE in source
    source = source.replace(SDPA_LINE, MANUAL_LINE)
    for method in ("def init_weights(self):", "def generate(self, tokens, max_tokens, temperature=1.0, top_k=None, seed=42):"):
        assert method in source
        source = source.replace(method, method + "\n        raise NotImplementedError('TODO')")
    path = tmp_path / "partial_gpt.py"
    path.write_text(source)
    return path


def _assert_attention_map(data):
    w = torch.tensor(data["weights"], dtype=torch.float64)
    t = len(data["tokens"])
    assert w.shape == (t, t) and t > 4
    assert torch.allclose(w.sum(-1), torch.ones(t, dtype=torch.float64), atol=1e-9)  # every row is a distribution
    assert float(w.triu(1).abs().max()) == 0.0  # causal: nothing from the future
    assert float(w.min()) >= 0.0
    assert data["reproduces_output"] < 1e-5  # weights @ v is what the model's attention returned


# ---------------------------------------------------------------------------------------------------------------
# attention


def test_attention_weights_are_softmax_of_sdpa_for_mha_gqa_mqa():
    gen = torch.Generator().manual_seed(0)
    for n_kv in (4, 2, 1):
        q = torch.randn(1, 4, 7, 8, generator=gen)
        k, v = (torch.randn(1, n_kv, 7, 8, generator=gen) for _ in range(2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=n_kv != 4)
        w = attention_weights(q, k, is_causal=True)
        v_full = v.double().repeat_interleave(4 // n_kv, dim=1)
        assert float((w @ v_full - y.double()).abs().max()) < 1e-5
        assert torch.allclose(w.sum(-1), torch.ones(1, 4, 7, dtype=torch.float64))
        assert float(w.triu(1).abs().max()) == 0.0


def test_head_classification():
    t = 6
    previous = torch.zeros(t, t)
    for i in range(t):
        previous[i, max(i - 1, 0)] = 1.0
    first = torch.zeros(t, t)
    first[:, 0] = 1.0
    uniform = torch.tril(torch.ones(t, t))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    assert classify(previous)["kind"] == HeadKind.PREVIOUS
    assert classify(first)["kind"] == HeadKind.FIRST
    assert classify(torch.eye(t))["kind"] == HeadKind.SELF
    assert classify(uniform)["kind"] == HeadKind.OTHER


def test_attention_json_on_the_reference_is_causal_normalised_and_reproduces_the_output(capsys):
    rc, out, _ = _run(capsys, "attention", "--json", "--layer", "2", "--head", "1", "--prompt", "one two three four")
    assert rc == 0
    data = json.loads(out)
    assert (data["layer"], data["head"]) == (2, 1)
    assert data["tokens"][0] == "<|bos|>"
    _assert_attention_map(data)
    assert data["recorded_from"] == ["sdpa"]
    assert len(data["heads"]) == 4 and all(len(row) == 2 for row in data["heads"])


def test_attention_multi_query_and_the_heatmap(capsys):
    rc, out, _ = _run(capsys, "attention", "--kv-heads", "1", "--values", "--prompt", "a b c d e")
    assert rc == 0
    assert "1 key/value head (MQA)" in out
    assert "every head" in out and "layer" in out
    assert "<|bos|>" in out  # the tokens label the rows
    assert "1.0" in out  # --values: position 0 can only look at itself


def test_attention_partial_file_recomputes_from_projections(capsys, partial):
    rc, out, _ = _run(capsys, "attention", "--file", str(partial), "--json", "--layer", "3")
    assert rc == 0
    data = json.loads(out)
    _assert_attention_map(data)
    assert data["recorded_from"] == ["projections"]  # no scaled_dot_product_attention call to record


def test_attention_skeleton_says_not_yet(capsys, skeleton):
    rc, out, _ = _run(capsys, "attention", "--file", str(skeleton))
    assert rc == 1
    assert "not yet: GPT.__init__ is still a TODO" in out


def test_attention_usage_errors(capsys, tmp_path):
    rc, _, err = _run(capsys, "attention", "--layer", "9")
    assert rc == 2 and "--layer 9 does not exist" in err
    rc, _, err = _run(capsys, "attention", "--file", str(tmp_path / "missing.py"))
    assert rc == 2 and "does not exist" in err
    rc, _, err = _run(capsys, "attention", "--step", "3")
    assert rc == 2 and "--checkpoint" in err


def test_attention_on_a_checkpoint(capsys, tmp_path, monkeypatch):
    from nanochat import gpt
    from nanochat.checkpoint_manager import checkpoints_dir, save_checkpoint
    from nanochat.tokenizer import get_tokenizer
    from workbench.course.trace import config_kwargs

    kwargs = config_kwargs(2, get_tokenizer().get_vocab_size(), 64)
    model = gpt.GPT(gpt.GPTConfig(**kwargs))
    model.init_weights()
    save_checkpoint(str(Path(checkpoints_dir("base")) / "htest"), 7, model.state_dict(), None,
                    {"model_config": kwargs, "step": 7, "model_source": "reference"})
    rc, out, _ = _run(capsys, "attention", "--checkpoint", "base", "--model-tag", "htest", "--json", "--layer", "1")
    assert rc == 0
    data = json.loads(out)
    _assert_attention_map(data)
    assert "step 7" in data["model"] and data["n_layer"] == 2
    # a checkpoint that names a model file outside the current directory does not get to run it
    save_checkpoint(str(Path(checkpoints_dir("base")) / "hforeign"), 7, model.state_dict(), None,
                    {"model_config": kwargs, "step": 7, "model_source": str(tmp_path / "elsewhere.py")})
    rc, out, _ = _run(capsys, "attention", "-i", "base", "-g", "hforeign")
    assert rc == 1
    assert "only run from inside the current directory" in out


def test_a_crash_in_the_model_file_is_reported_not_raised(capsys, tmp_path):
    source = REFERENCE.read_text(encoding="utf-8").replace(
        "    def init_weights(self):", "    def init_weights(self):\n        import os; os._exit(3)")
    path = tmp_path / "exits.py"
    path.write_text(source)
    rc, out, _ = _run(capsys, "attention", "--file", str(path))
    assert rc == 1
    assert "exited with code 3" in out


# ---------------------------------------------------------------------------------------------------------------
# profile


def test_profile_covers_every_block_and_measures_flops(capsys):
    rc, out, _ = _run(capsys, "profile", "--json", "--batch", "1", "--seq", "64", "--warmup", "0")
    assert rc == 0
    data = json.loads(out)
    rows = {r["name"]: r for r in data["modules"]}
    for i in range(4):
        block = rows[f"transformer.h.{i}"]
        assert block["forward_ms"] > 0 and block["backward_ms"] > 0
        assert block["params"] == rows[f"transformer.h.{i}.attn"]["params"] + rows[f"transformer.h.{i}.mlp"]["params"]
        assert block["saved_bytes"] > 0 and block["flops"] > 0
    assert rows["lm_head"]["backward_ms"] is not None
    assert data["step_ms"] >= data["forward_ms"] > 0
    assert 0.9 < data["flops_per_token"] / data["estimate_flops"] < 1.1


def test_profile_table_and_skeleton(capsys, skeleton):
    rc, out, _ = _run(capsys, "profile", "--batch", "1", "--seq", "32", "--warmup", "0", "--depth", "2")
    assert rc == 0
    assert "h.1" in out and "lm_head" in out and "estimate_flops()" in out and "tok/s" in out
    rc, out, _ = _run(capsys, "profile", str(skeleton))
    assert rc == 1 and "not yet: GPT.__init__ is still a TODO" in out


# ---------------------------------------------------------------------------------------------------------------
# compare


def test_compare_reference_with_itself_matches_and_fills_status(capsys, tmp_path):
    assert main(["init", str(tmp_path / "ws")]) == 0
    learner = tmp_path / "ws" / "learner_gpt.py"
    shutil.copy(REFERENCE, learner)  # a verbatim copy of the reference is a valid learner file
    status = tmp_path / "ws" / "STATUS.md"
    status.write_text(status.read_text() + "\nmy own notes stay\n")
    capsys.readouterr()
    rc, out, _ = _run(capsys, "compare", str(learner), "--steps", "3", "--seq", "64", "--eval-batches", "1", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["learner"]["loss"] == data["reference"]["loss"] and len(data["learner"]["loss"]) == 3
    assert data["learner"]["val_bpb"] == data["reference"]["val_bpb"]
    assert data["learner"]["params"] == data["reference"]["params"]
    from workbench.status.doc import StatusDoc
    rows = {r[0]: r for r in StatusDoc.load(status).comparison_rows}
    assert rows["Training loss (compare)"][3] == "same"
    assert rows["Parameters"][1] == f"{data['learner']['params']:,}"
    assert "my own notes stay" in status.read_text()


def test_compare_skeleton_says_not_yet(capsys, skeleton):
    rc, out, _ = _run(capsys, "compare", str(skeleton), "--steps", "1")
    assert rc == 1
    assert "not yet: GPT.__init__ is still a TODO" in out


def test_compare_partial_file_trains_with_default_init(capsys, partial):
    rc, out, _ = _run(capsys, "compare", str(partial), "--steps", "2", "--seq", "64", "--eval-batches", "1",
                      "--no-status")
    assert rc == 0
    assert "init_weights is still a TODO" in out
    assert "learner vs reference" in out
    assert not math.isnan(float(out.split("Validation bpb (compare)")[1].split()[1].strip("│")))

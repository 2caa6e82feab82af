"""`nanochat-workbench trace --grad`: per-layer gradient norms and update/weight ratios over a few real optimizer
steps; a cut graph shows as a layer no gradient reaches; bad flags are usage errors."""

import pathlib
import re

import pytest

from workbench.cli import main
from workbench.course.grad_trace import layer_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
FAST = ["--grad", "--vocab", "512", "--seq", "16", "--depth", "2"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def _rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if cells and re.fullmatch(r"wte|lm_head|h\.\d+\.(attn|mlp)", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


def test_layer_names():
    assert layer_of("transformer.wte.weight") == "wte"
    assert layer_of("transformer.h.3.attn.c_q.weight") == "h.3.attn"
    assert layer_of("transformer.h.0.mlp.c_fc.weight") == "h.0.mlp"
    assert layer_of("lm_head.weight") == "lm_head"


def test_reference_gradients_and_updates_per_layer(capsys):
    assert main(["trace", *FAST, "--steps", "3"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["wte", "h.0.attn", "h.0.mlp", "h.1.attn", "h.1.mlp", "lm_head"]
    assert all(len(cells) == 6 for cells in rows.values())  # |∇| and Δ/W for each of 3 steps
    # step 1: lm_head starts at zero, so only lm_head gets a gradient; from step 2 every layer does and moves
    assert float(rows["lm_head"][0]) > 0 and rows["h.0.mlp"][0] == "0"
    for layer, cells in rows.items():
        assert float(cells[2]) > 0 and 0 < float(cells[5]) < 1, (layer, cells)
    losses = [float(x) for x in re.search(r"loss before each step: (.*)", out).group(1).split(", ")]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_a_cut_graph_shows_a_layer_no_gradient_reaches(tmp_path, capsys):
    cut = REFERENCE.replace("        x = norm(x)\n        for block", "        x = norm(x).detach()\n        for block", 1)
    assert cut != REFERENCE
    path = tmp_path / "learner_gpt.py"
    path.write_text(cut)
    assert main(["trace", str(path), *FAST, "--steps", "2"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["wte"][0] == "none" and rows["wte"][2] == "none"
    assert float(rows["h.0.attn"][2]) > 0


def test_a_todo_in_the_learner_file_is_one_line(tmp_path, capsys):
    todo = REFERENCE.replace('        """AdamW for the embedding and lm_head, Muon for every matrix inside the blocks.',
                             '        raise NotImplementedError("TODO: setup_optimizers")\n        """AdamW', 1)
    path = tmp_path / "learner_gpt.py"
    path.write_text(todo)
    assert main(["trace", str(path), *FAST]) == 1
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "GPT.setup_optimizers" in out and "Traceback" not in out


@pytest.mark.parametrize("steps", ["0", "51"])
def test_steps_out_of_range_is_a_usage_error(capsys, steps):
    assert main(["trace", "--grad", "--steps", steps]) == 2
    assert "--steps must be between 1 and 50" in capsys.readouterr().err

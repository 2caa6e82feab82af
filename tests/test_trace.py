"""`nanochat-workbench trace`: what a learner sees for the reference, a skeleton, half-done and buggy files."""

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.course.workspace import SKELETON_TEMPLATE

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "nanochat" / "gpt.py"
FAST = ["--vocab", "512", "--seq", "16"]
SMALL = ["--vocab", "256", "--seq", "8", "--depth", "2"]  # for tests that do not look at the numbers


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def _trace(capsys, *argv):
    rc = main(["trace", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _learner_file(tmp_path, replace: dict[str, str] | None = None, edit=None) -> Path:
    """The reference written out as a learner file, with some bodies swapped (qualname -> new body source)."""
    source = REFERENCE.read_text(encoding="utf-8")
    if edit:
        source = edit(source)
    lines = source.split("\n")
    tree = ast.parse(source)
    spans = []
    for node in tree.body:
        defs = [(node.name, node)] if isinstance(node, ast.FunctionDef) else \
            [(f"{node.name}.{s.name}", s) for s in node.body if isinstance(s, ast.FunctionDef)] \
            if isinstance(node, ast.ClassDef) else []
        for qualname, fn in defs:
            if replace and qualname in replace:
                indent = " " * fn.body[0].col_offset
                spans.append((fn.body[0].lineno - 1, fn.end_lineno, textwrap.indent(replace[qualname], indent)))
    for start, end, body in sorted(spans, reverse=True):
        lines[start:end] = body.rstrip("\n").split("\n")
    path = tmp_path / "learner_gpt.py"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_reference_trace_shows_every_part(capsys):
    rc, out, err = _trace(capsys, *FAST)
    assert rc == 0, out + err
    assert "trace: reference GPT (nanochat.gpt)" in out
    # every module and function call of block 0, in the order they ran
    block0 = out[out.index("h.0"):out.index("h.1")]
    order = [name for name in re.findall(r"│\s+(c_q|c_k|c_v|apply_rotary_emb\(\)|norm\(\)|c_proj|c_fc|attn|mlp)\s",
                                         block0)]
    assert order == ["norm()", "attn", "c_q", "c_k", "c_v", "apply_rotary_emb()", "apply_rotary_emb()", "norm()",
                     "norm()", "c_proj", "norm()", "mlp", "c_fc", "c_proj"]
    assert "1×16×512" in out and "1×16×256" in out and "(1×16×1×64)×2" in out
    # the output projections were zero at init and got filled, so the blocks change the stream
    assert "lm_head.weight" in out and "transformer.h.*.attn.c_proj.weight" in out
    assert "non-finite" in out and "first non-finite" not in out
    # parameters: 512*256 (wte) + 4 * (4*256*256 + 8*256*256) + 256*512 (lm_head)
    assert f"{2 * 512 * 256 + 4 * 12 * 256 * 256:,}" in out
    # attention and the measured causal mask: lower triangle only
    assert "q = c_q(x): 1×16×256 → view 1×16×2×128" in out
    assert "multi-head attention" in out
    mask_rows = re.findall(r"^\s+(\d)\s+((?:[■·○]\s*){8})$", out, re.MULTILINE)
    assert len(mask_rows) == 8
    for i, cells in mask_rows:
        assert cells.split() == ["■"] * (int(i) + 1) + ["·"] * (7 - int(i))
    assert "no position sees the future" in out
    # scaling table computed from the code: depth 20 is ~561M parameters
    row20 = next(line for line in out.splitlines() if re.match(r"│\s+20 │", line))
    assert "1280" in row20 and "561.0M" in row20 and "3.49e+09" in row20


def test_mqa_sharing_is_drawn(capsys):
    rc, out, _ = _trace(capsys, *FAST, "--kv-heads", "1")
    assert rc == 0
    assert "multi-query attention (MQA)" in out
    assert re.search(r"│\s+0 │ 0, 1\s", out)
    assert "k = c_k(x): 1×16×128 → view 1×16×1×128" in out
    assert "2× less" in out


def test_usage_errors(capsys, tmp_path):
    assert _trace(capsys, str(tmp_path / "missing.py"))[0] == 2
    rc, _, err = _trace(capsys, *FAST, "--kv-heads", "3")
    assert rc == 2 and "[1, 2]" in err
    assert _trace(capsys, "--seq", "0")[0] == 2
    assert main(["trace", "--depth", "four"]) == 2


@pytest.mark.parametrize("flags", [(), ("--grad",)])
def test_a_track_file_is_a_usage_error_naming_its_track(capsys, tmp_path, flags):
    from workbench.course.workspace import init_workspace
    ws = init_workspace(tmp_path / "ws", track="optimizer")
    rc, out, err = _trace(capsys, str(ws.directory / "learner_muon.py"), *flags)
    assert rc == 2 and out == ""
    assert " ".join(err.split()) == ("error: learner_muon.py is a file of the optimizer track; trace runs your GPT "
                                     "file (learner_gpt.py), or the reference with no file")


def test_skeleton_stops_at_the_first_todo_without_a_traceback(capsys, tmp_path):
    path = tmp_path / "learner_gpt.py"
    path.write_bytes(SKELETON_TEMPLATE.read_bytes())
    rc, out, err = _trace(capsys, str(path), *SMALL)
    assert rc == 1
    assert "not implemented yet: GPT.__init__ (phase 1): TODO: create config" in out
    assert "lessons/03-embeddings-and-config.md" in out
    assert "Traceback" not in out + err


def test_missing_init_weights_goes_on_with_default_init(capsys, tmp_path):
    path = _learner_file(tmp_path, {"GPT.init_weights": 'raise NotImplementedError("TODO: init")\n'})
    rc, out, _ = _trace(capsys, str(path), *SMALL)
    assert rc == 1  # not everything could run
    assert "not implemented yet: GPT.init_weights (phase 2)" in out
    assert "default initialisation" in out
    assert "forward pass, in call order" in out and "causal mask" in out and "scaling" in out
    assert "reference total" in out and "same" in out


def test_missing_forward_piece_names_it(capsys, tmp_path):
    path = _learner_file(tmp_path, {"MLP.forward": 'raise NotImplementedError("TODO: c_fc, relu², c_proj")\n'})
    rc, out, _ = _trace(capsys, str(path), *SMALL)
    assert rc == 1
    assert "not implemented yet: MLP.forward (phase 3): TODO: c_fc, relu², c_proj" in out


def test_missing_estimate_flops_leaves_the_column_empty(capsys, tmp_path):
    path = _learner_file(tmp_path, {"GPT.estimate_flops": 'raise NotImplementedError("TODO: flops")\n'})
    rc, out, _ = _trace(capsys, str(path), *SMALL)
    assert rc == 1 and "not implemented yet: GPT.estimate_flops (phase 4)" in out
    row20 = next(line for line in out.splitlines() if re.match(r"│\s+20 │", line))
    assert "561.0M" in row20 and " - " in row20


def test_a_causal_leak_is_shown_in_red(capsys, tmp_path):
    path = _learner_file(tmp_path, edit=lambda s: s.replace("is_causal=True", "is_causal=False", 1))
    rc, out, _ = _trace(capsys, str(path), *SMALL)
    assert rc == 0  # the trace itself ran; the picture shows the bug
    assert "28 future dependencies" in out  # every cell above the diagonal of an 8x8 mask
    assert "causal mask is missing or wrong" in out


def test_the_first_non_finite_module_is_marked(capsys, tmp_path):
    body = "x = self.c_fc(x)\nx = torch.log(F.relu(x).square() - 1.0)\nreturn self.c_proj(x)\n"
    path = _learner_file(tmp_path, {"MLP.forward": body})
    rc, out, _ = _trace(capsys, str(path), *SMALL)
    assert rc == 0
    marked = [line for line in out.splitlines() if "first non-finite" in line]
    assert len(marked) == 1 and "c_proj" in marked[0]
    before = out[:out.index(marked[0])]
    assert "c_fc" in before.splitlines()[-1]  # c_fc right above it was still finite


def test_an_exception_in_the_learners_code_is_one_clear_line(capsys, tmp_path):
    body = "return x.view(-1, 7, 3)\n"
    path = _learner_file(tmp_path, {"MLP.forward": body})
    rc, out, err = _trace(capsys, str(path), *SMALL)
    assert rc == 1
    line = next(line for line in out.splitlines() if "failed in" in line)
    assert "MLP.forward" in line and "learner_gpt.py:" in line and "RuntimeError" in line
    assert "return x.view(-1, 7, 3)" in out
    stopped = next(line for line in out.splitlines() if "← stopped here" in line)
    assert re.search(r"│\s+mlp\s+← stopped here", stopped)  # the table of what ran, up to the failing module
    assert out.index("← stopped here") < out.index("failed in")
    assert "Traceback" not in out + err


def test_a_file_that_does_not_import_is_reported(capsys, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\ndef oops(:\n")
    rc, out, err = _trace(capsys, str(path))
    assert rc == 1 and "syntax error" in out and "broken.py:2" in out


@pytest.mark.slow  # may train the embedded-corpus tokenizer on first use
def test_trace_as_a_real_command_with_the_default_vocab(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "trace", "--seq", "8", "--depth", "2"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    batch = next(line for line in proc.stdout.splitlines() if line.startswith("batch:"))
    assert "tokens of real text" in batch, batch


def test_trace_piped_to_a_file_is_not_cut_to_80_columns(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    with open(tmp_path / "trace.txt", "w") as out:
        proc = subprocess.run([sys.executable, "-m", "workbench.cli", "trace", "--seq", "8", "--depth", "2"],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "trace.txt").read_text()
    assert max(len(line) for line in text.splitlines()) > 80
    rows = [line for line in text.splitlines() if "│" in line]
    assert rows and not any("…" in row for row in rows)  # no module name or shape cut short

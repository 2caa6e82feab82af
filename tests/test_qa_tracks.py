"""Found by trying the tracks as a learner from the CLI: what `check`'s report and the track commands show."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from nanochat import training
from workbench.check.result import Status

from workbench.check.report import components_table, shapes_table

LONG = "tokenizing_distributed_data_loader_with_state"


def render(comps, width):
    console = Console(width=width, record=True, color_system=None)
    console.print(components_table(comps, console.width))
    return console.export_text()


def test_long_component_name_leaves_the_reason_readable_at_80_columns():
    comps = [dict(qualname=LONG, status="todo", phase=7, detail=f"TODO: {LONG}: pack <|bos|> + document tokens"),
             dict(qualname="_advance", status="pass", phase=7, detail="consumes n tokens from the front, in place")]
    text = render(comps, 80)
    assert "TODO: pack <|bos|> + document" in text  # the reason keeps a readable width, its name not repeated
    assert "consumes n tokens from the front" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    cells = [line.split("│")[1].strip() for line in text.splitlines()[3:] if "│" in line]
    assert "".join(cells).startswith(LONG + "_advance")  # the long name folded over lines, nothing cut


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_experiment_flag_on_a_track_file_is_a_usage_error(tmp_path):
    (tmp_path / "learner_training.py").write_text(Path(training.__file__).read_text())
    for name in ("MLP.forward", "lr_multiplier"):  # a GPT method (was silently ignored) and the file's own function
        done = cli("check", "--experiment", name, tmp_path / "learner_training.py")
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            "nanochat-workbench check: error: --experiment is for the GPT file's methods; "
            f"{tmp_path / 'learner_training.py'} is a file of the training track"]


def test_a_nan_in_the_learners_adamw_gives_rows_that_are_valid_json(tmp_path):
    from nanochat import adamw
    from workbench.tracks.optimizer import probes_adamw
    source = Path(adamw.__file__).read_text(encoding="utf-8")
    lerp = "    exp_avg.lerp_(grad, 1 - beta1)\n"
    assert source.count(lerp) == 1
    path = tmp_path / "learner_adamw.py"
    path.write_text(source.replace(lerp, lerp + "    exp_avg.fill_(float('nan'))\n"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("learner_adamw_nan", path)
    learner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learner)
    rows = {r["qualname"]: r for r in probes_adamw.check(learner, adamw)}
    assert rows["adamw_step"]["status"] == Status.MISMATCH and "NaN or inf" in rows["adamw_step"]["detail"]
    json.dumps(list(rows.values()), allow_nan=False)  # `check --json` printed "max_abs_diff": Infinity


SHAPES = [dict(name="model", kind="module", type="GPT", depth=0, inputs=[[1, 512], [1, 512]], output=[],
               dtype="float32"),
          dict(name="transformer.h.0.attn.c_q", kind="module", type="Linear", depth=3, inputs=[[1, 512, 256]],
               output=[1, 512, 256], dtype="float32"),
          dict(name="apply_rotary_emb", kind="function", caller="CausalSelfAttention.forward", depth=3,
               inputs=[[1, 512, 2, 128], [1, 512, 1, 64], [1, 512, 1, 64]], output=[1, 512, 2, 128],
               dtype="float32")]


def test_shapes_and_method_names_stay_readable_at_80_columns():
    console = Console(width=80, record=True, color_system=None)
    console.print(shapes_table(SHAPES, 60, console.width))
    text = console.export_text()
    assert "…attn.c_q" in text and "apply_rotary_emb()" in text  # was "transformer.h.0.attn.c_q  Linear" + "inp…"
    assert "(1, 512, 256)" in text and "(1, 512, 2, 128)" in text and "float32" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    methods = render([dict(qualname="CausalSelfAttention.forward", status="pass", phase=3, detail="matches")], 80)
    assert "CausalSelfAttention." in methods and "forward" in methods  # broken after the dot, not in the word
    assert "forwar" not in methods.replace("forward", "")


def test_the_header_of_a_result_without_rows_has_no_empty_count():
    from workbench.check.report import print_header
    console = Console(width=80, record=True, color_system=None)
    print_header(console, {"ok": False, "file": "/w/learner_training.py", "stage": "import", "components": [],
                           "timings": {"total_s": 4.3}})
    assert console.export_text().splitlines()[0] == "NOT OK learner_training.py  stage: import  ·  4.30 s"


@pytest.mark.slow
def test_a_method_returning_none_is_said_without_the_checkers_internal_exception_name(tmp_path):
    from workbench.check.client import check_file
    source = (Path(training.__file__).parent / "gpt.py").read_text(encoding="utf-8")
    relu2 = "        x = F.relu(x).square()\n"
    assert source.count(relu2) == 1
    path = tmp_path / "learner_gpt.py"
    path.write_text(source.replace(relu2, relu2 + "        return None\n"), encoding="utf-8")
    result = check_file(str(path), steps=1, timeout=120, child="fork")
    row = next(c for c in result["components"] if c["qualname"] == "MLP.forward")
    assert row["status"] == Status.ERROR and row["detail"] == "MLP.forward returned NoneType, not a tensor"
    assert "_ContractError" not in json.dumps(result)


def test_a_very_long_printed_line_is_cut_in_the_report():
    from workbench.check.report import print_report
    console = Console(width=80, record=True, color_system=None)
    print_report({"ok": True, "file": "learner_gpt.py", "stage": "done", "components": [],
                  "stdout_tail": "short line\n" + "x" * 5000 + "\n"}, console)
    text = console.export_text()
    assert "short line" in text and "(+4,700" in text and "characters)" in text
    assert len(text.splitlines()) < 15  # was 70 rows of x


def test_a_traceback_through_a_module_call_keeps_the_learners_frames_and_the_raising_one(tmp_path):
    import torch
    from workbench.check.probe import trimmed_traceback
    path = tmp_path / "learner_gpt.py"
    path.write_text("import torch\n\nclass MLP(torch.nn.Module):\n    def forward(self, x):\n"
                    "        return x + None\n\ndef run():\n    return MLP()(torch.zeros(2))\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location("learner_tb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TypeError) as caught:
        module.run()
    text = trimmed_traceback(caught.value, str(path))
    assert "in run" in text and "in forward" in text and "TypeError" in text
    assert "_call_impl" not in text and os.path.dirname(torch.__file__) not in text  # nn.Module's machinery


def test_a_syntax_error_in_the_learners_file_is_shown_without_the_import_machinery(tmp_path):
    from workbench.check.probe import trimmed_traceback

    path = tmp_path / "learner_gpt.py"
    path.write_text("def norm(x)\n    return x\n", encoding="utf-8")
    try:
        compile(path.read_text(), str(path), "exec")
    except SyntaxError as e:
        text = trimmed_traceback(e, str(path))
    assert text.startswith(f'  File "{path}", line 1') and text.rstrip().endswith("SyntaxError: expected ':'")

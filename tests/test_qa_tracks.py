"""Found by trying the tracks as a learner from the CLI: what `check`'s report and the track commands show."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from nanochat import training
from workbench.check.result import Status

from workbench.check.report import components_table

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
    assert "".join(line[4:30].strip() for line in text.splitlines()[3:5]) == LONG  # folded, nothing cut


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

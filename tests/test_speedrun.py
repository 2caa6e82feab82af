"""speedrun.sh and the presets it reads: the preset command line, and (slow) the whole CPU pipeline."""

import subprocess
import sys

import pytest

from nanochat import presets


def run_presets(*args):
    return subprocess.run([sys.executable, "-m", "nanochat.presets", *args], capture_output=True, text=True)


def test_every_preset_argument_is_one_shell_word():
    for preset in presets.PRESETS.values():
        assert set(preset.stages) <= set(presets.STAGES), preset.name
        for stage, args in preset.stages.items():
            for arg in args:
                assert arg and not any(c.isspace() for c in arg), (preset.name, stage, arg)


def test_args_prints_one_stage_on_one_line():
    result = run_presets("args", "cpu", "base")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == list(presets.PRESETS["cpu"].stages["base"])


def test_stages_are_in_pipeline_order_and_rl_is_optional():
    assert run_presets("stages", "cpu").stdout.split() == [
        "tokenizer", "tok_eval", "base", "base_loss", "base_chat_eval", "mid", "mid_eval", "sft", "sft_eval"]
    assert run_presets("stages", "cpu", "--rl").stdout.split()[-2:] == ["rl", "rl_eval"]
    assert run_presets("stages", "d20").stdout.split()[0] == "data"  # the cpu preset downloads nothing


def test_unknown_names_are_usage_errors():
    result = run_presets("args", "cpu", "bogus")
    assert result.returncode == 2 and "unknown stage 'bogus'" in result.stderr and "Traceback" not in result.stderr
    result = run_presets("args", "huge", "base")
    assert result.returncode == 2 and "choose one of d20, d12, gpu, cpu" in result.stderr
    result = run_presets("args", "cpu", "data")
    assert result.returncode == 2 and "does not run stage 'data'" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_cpu_preset_runs_every_stage_with_a_learner_file(tmp_path):
    """PRESET=cpu RL=1 MODEL=<a learner file> from an empty base dir: every stage runs, the report's table has
    BASE, MID, SFT and RL values, the end says how to chat, and the SFT model answers a question."""
    import os
    import re
    import shutil
    from pathlib import Path

    learner = tmp_path / "learner_gpt.py"
    shutil.copy(Path(presets.__file__).with_name("gpt.py"), learner)  # a verbatim copy is a valid learner file
    base = tmp_path / "base"
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "PRESET": "cpu", "RL": "1", "MODEL": str(learner),
           "PYTHON": sys.executable}
    repo = Path(presets.__file__).resolve().parents[1]
    result = subprocess.run(["bash", str(repo / "speedrun.sh")], env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for stage in presets.stages_of("cpu", include_optional=True):
        assert re.search(rf"^== {stage}: \d+m\d\ds$", result.stdout, re.M), f"no time printed for {stage}"
    assert "--model " + str(learner) in result.stdout  # the training and eval stages ran the learner's file
    assert "chat_cli -i rl" in result.stdout and "chat_web -i rl" in result.stdout
    table = (base / "report" / "report.md").read_text()
    rows = [line.split("|")[2:6] for line in table.splitlines() if line.startswith("| ") and "Metric" not in line
            and len(line.split("|")) == 7]
    for column, phase in enumerate(["base", "mid", "sft", "rl"]):
        assert any(row[column].strip() != "-" for row in rows), f"no {phase} result in the report table"
    answer = subprocess.run([sys.executable, "-m", "nanochat.scripts.chat_cli", "-i", "sft", "-p", "What is 2+2?",
                             "-m", "16", "--model", str(learner)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr[-2000:]


def test_every_preset_stage_parses_with_its_script():
    """A renamed or removed flag in a script breaks its presets here, not hours into a GPU run. The extras are
    what speedrun.sh adds: the run's tag and MODEL's file to every training and eval stage."""
    import importlib

    for preset in presets.PRESETS.values():
        for stage, args in preset.stages.items():
            module = importlib.import_module(presets.STAGE_MODULES[stage])
            if not hasattr(module, "parse_args"):
                continue
            module.parse_args(list(args))  # argparse exits (SystemExit 2) on an unknown flag or bad value
            if stage not in ("data", "tokenizer", "tok_eval"):
                tag = ["--model-tag=d4"] if stage == "base" else ["-g", "d4"]
                parsed = module.parse_args([*args, *tag, "--model", "learner_gpt.py"])
                assert parsed.model_tag == "d4" and parsed.model == "learner_gpt.py", (preset.name, stage)

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
    assert result.returncode == 2 and "choose one of d20, d12, cpu" in result.stderr
    result = run_presets("args", "cpu", "data")
    assert result.returncode == 2 and "does not run stage 'data'" in result.stderr

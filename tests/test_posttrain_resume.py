"""mid_train, chat_sft and chat_rl: interrupted with Ctrl-C, resumed, and ending with exactly the weights of an
uninterrupted run; and their one-line refusals when the input checkpoint or data is missing."""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch

# RL needs answers that differ in reward for its gradient to be non-zero; an untrained model never solves a
# word problem, so the resume test rewards answers of even length instead (same script, one task swapped)
RL_CHILD = """
import sys
from nanochat.posttrain import mixtures, offline_tasks
class EvenLength(offline_tasks.SyntheticGSM8K):
    def evaluate(self, conversation, response):
        return len(response) % 2 == 0
mixtures.rl_task = lambda kind, split: EvenLength(size=50, split="train" if split == "train" else "test")
from nanochat.scripts import chat_rl
chat_rl.main(sys.argv[1:])
"""

STAGES = {
    "mid": (["-m", "nanochat.scripts.mid_train"],
            ["--data=offline", "--max_seq_len=128", "--device_batch_size=2", "--total_batch_size=256",
             "--eval_every=3", "--eval_tokens=256"]),
    "sft": (["-m", "nanochat.scripts.chat_sft"],
            ["--data=offline", "--device_batch_size=2", "--examples_per_step=4", "--eval_every=3", "--eval_steps=1",
             "--chat_eval_problems=0"]),
    "rl": (["-c", RL_CHILD],
           ["--data=offline", "--examples_per_step=2", "--num_samples=4", "--device_batch_size=2",
            "--max_new_tokens=8", "--eval_every=3", "--eval_examples=2"]),
}
STEPS = 6
STARTS_FROM = {"mid": "base_checkpoints/d2/model_000002.pt", "sft": "mid_checkpoints/d2/model_000001.pt",
               "rl": "sft_checkpoints/d2/model_000001.pt"}


def run_stage(base, stage, *extra, check=True):
    command, flags = STAGES[stage]
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base)}
    result = subprocess.run([sys.executable, *command, *flags, *extra], env=env, capture_output=True, text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def run_and_interrupt(base, stage):
    """Start a STEPS-step run, Ctrl-C it once step 1 is done; returns the step it saved and stopped at."""
    command, flags = STAGES[stage]
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *command, *flags, f"--num_iterations={STEPS}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"step 00001/{STEPS:05d}"):
            proc.send_signal(signal.SIGINT)
    proc.wait(timeout=600)
    output = "".join(lines)
    assert proc.returncode == 0, output[-3000:]
    stopped = re.search(r"stopped at step (\d+); continue with --resume_from_step=(\d+)", output)
    assert stopped, output[-3000:]
    return int(stopped.group(1))


@pytest.fixture(scope="module")
def template(tmp_path_factory, nanochat_base_dir):
    """A base dir holding a tiny base, mid and sft checkpoint (tag d2), sharing the session's tokenizer."""
    from nanochat.tokenizer import get_tokenizer

    get_tokenizer()
    base = tmp_path_factory.mktemp("posttrain_template")
    shutil.copytree(nanochat_base_dir / "tokenizer_embedded", base / "tokenizer_embedded")
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base)}
    subprocess.run([sys.executable, "-m", "nanochat.scripts.base_train", "--depth=2", "--max_seq_len=128",
                    "--device_batch_size=2", "--total_batch_size=256", "--num_iterations=2", "--data=embedded",
                    "--eval_every=-1", "--sample_every=-1"], env=env, check=True, capture_output=True, timeout=600)
    run_stage(base, "mid", "--num_iterations=1", "--eval_every=-1")
    run_stage(base, "sft", "--num_iterations=1", "--eval_every=-1")
    return base


def final_weights(base, stage):
    return torch.load(base / f"{stage}_checkpoints" / "d2" / f"model_{STEPS:06d}.pt", weights_only=True)


def train_losses(base, stage):
    import json

    path = base / f"{stage}_checkpoints" / "d2" / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["mid", "sft", "rl"])
def test_interrupted_and_resumed_equals_uninterrupted(template, tmp_path, stage):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    shutil.copytree(template, straight)
    shutil.copytree(template, interrupted)
    run_stage(straight, stage, f"--num_iterations={STEPS}")
    stopped = run_and_interrupt(interrupted, stage)
    assert 1 < stopped < STEPS
    resumed = run_stage(interrupted, stage, f"--num_iterations={STEPS}", f"--resume_from_step={stopped}")
    assert f"resumed {stage} from step {stopped}" in resumed.stdout
    a, b = final_weights(straight, stage), final_weights(interrupted, stage)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"{stage}: resumed weights differ from the uninterrupted run's"
    assert train_losses(straight, stage) == train_losses(interrupted, stage)  # one unbroken, identical curve
    reference = torch.load(template / STARTS_FROM[stage], weights_only=True)
    assert any(not torch.equal(a[k], reference[k]) for k in a), "training changed nothing: the test proves nothing"


# ---- the learner's optimizer and training files in a post-training stage (as base_train takes them) ------------

def learner_copies(tmp_path, training_edit=None):
    """A verbatim copy of nanochat/muon.py, and of nanochat/training.py (edited by `training_edit`)."""
    import nanochat

    source = os.path.dirname(nanochat.__file__)
    muon, training = tmp_path / "learner_muon.py", tmp_path / "learner_training.py"
    shutil.copy(os.path.join(source, "muon.py"), muon)
    text = open(os.path.join(source, "training.py"), encoding="utf-8").read()
    training.write_text(training_edit(text) if training_edit else text)
    return ["--optimizer", str(muon), "--training", str(training)]


def test_mid_training_with_the_learners_copies_trains_exactly_as_the_reference(template, tmp_path):
    ours, copies = tmp_path / "ours", tmp_path / "copies"
    shutil.copytree(template, ours)
    shutil.copytree(template, copies)
    run_stage(ours, "mid", "--num_iterations=2", "--eval_every=-1")
    flags = learner_copies(tmp_path)
    result = run_stage(copies, "mid", "--num_iterations=2", "--eval_every=-1", *flags)
    banner = next(line for line in result.stdout.splitlines() if line.startswith("your code: "))  # whose code runs
    assert f"--optimizer {flags[1]}" in banner and f"--training {flags[3]}" in banner
    assert len(train_losses(ours, "mid")) == 2
    assert train_losses(copies, "mid") == train_losses(ours, "mid")  # the same code: the same losses, exactly


def test_a_crash_in_the_learners_step_stops_sft_in_one_line_naming_it(template, tmp_path):
    def crash(text):
        anchor = '    every optimizer and clear the gradients."""\n'
        assert anchor in text
        return text.replace(anchor, anchor + "    1 / 0  # planted\n", 1)

    base = tmp_path / "base"
    shutil.copytree(template, base)
    flags = learner_copies(tmp_path, crash)
    result = run_stage(base, "sft", "--num_iterations=2", "--eval_every=-1", *flags, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: your code stopped training at {flags[3]}:" in result.stderr
    assert "in optimizer_step: ZeroDivisionError: division by zero" in result.stderr

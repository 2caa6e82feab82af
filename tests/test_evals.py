"""chat_eval and base_eval: scoring rules by hand, then both scripts end to end on a depth-4 CPU checkpoint
with the fixture tasks and the fixture CORE bundle, in subprocesses with the network closed."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from fixtures.evals.layout import HERE, lay_task_data
from nanochat.core_eval import CoreTask, centered, encode_option, fewshot_examples, load_bundle, render_texts
from nanochat.scripts.chat_eval import chatcore

BUNDLE = HERE / "core_bundle"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["--depth=4", "--max_seq_len=512", "--device_batch_size=1", "--total_batch_size=512", "--num_iterations=1",
         "--eval_every=-1", "--sample_every=-1"]


def run(module, args, base, timeout=600):
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[var] = "http://127.0.0.1:9"  # nothing listens there: any download attempt fails
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_chatcore_is_the_mean_centered_accuracy():
    results = {"ARC-Easy": 0.25, "ARC-Challenge": 0.625, "MMLU": 1.0, "GSM8K": 0.5, "HumanEval": 0.0,
               "SpellingBee": 0.25}
    assert chatcore(results) == pytest.approx((0 + 0.5 + 1 + 0.5 + 0 + 0.25) / 6)
    assert chatcore({"ARC-Easy": 0.5}) is None


def test_core_bundle_and_prompts():
    tasks = load_bundle(BUNDLE)
    assert [(t.label, t.task_type, t.num_fewshot, t.baseline) for t in tasks] == [
        ("fixture_mc", "multiple_choice", 2, 0.25), ("fixture_schema", "schema", 1, 0.5),
        ("fixture_lm", "language_modeling", 0, 0.0)]
    assert centered(0.625, 0.25) == 0.5
    mc = tasks[0]
    item = {"query": "Q: 1+1?", "choices": ["2", "3"], "gold": 0}
    shot = {"query": "Q: 2+2?", "choices": ["5", "4"], "gold": 1}
    assert render_texts(mc, item, [shot]) == [("Q: 2+2?\nAnswer: 4\n\nQ: 1+1?", "\nAnswer: 2"),
                                              ("Q: 2+2?\nAnswer: 4\n\nQ: 1+1?", "\nAnswer: 3")]
    schema = CoreTask("s", BUNDLE, 0, "schema", " ", 0.5)
    assert render_texts(schema, {"context_options": ["a", "b"], "continuation": "c", "gold": 1}, []) == [
        ("a", " c"), ("b", " c")]
    items = [{"i": i} for i in range(10)]
    shots = fewshot_examples(items, 3, 4)
    assert len(shots) == 4 and {"i": 3} not in shots and shots == fewshot_examples(items, 3, 4)


def test_long_prompts_are_cut_from_the_left():
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    ids, start = encode_option(tokenizer, "word " * 400, " end", max_len=64)
    assert len(ids) == 64 and tokenizer.decode(ids[start:]) == " end"


def test_missing_inputs_are_one_line_errors(tmp_path):
    result = run("nanochat.scripts.base_eval", [], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "python -m nanochat.scripts.base_eval --download" in result.stderr
    result = run("nanochat.scripts.chat_eval", ["-a", "NoSuchTask"], tmp_path)
    assert result.returncode == 2 and "unknown task" in result.stderr


@pytest.fixture(scope="module")
def checkpoint_base(tmp_path_factory, nanochat_base_dir):
    """A base dir with a 1-step depth-4 checkpoint and the fixture task data."""
    from nanochat.tokenizer import get_tokenizer

    get_tokenizer()  # the session's embedded tokenizer, trained once and copied
    base = tmp_path_factory.mktemp("evals")
    for cache in ("tokenizer_embedded", "embedded_corpus"):
        if (nanochat_base_dir / cache).is_dir():
            shutil.copytree(nanochat_base_dir / cache, base / cache)
    result = run("nanochat.scripts.base_train", TRAIN, base)
    assert result.returncode == 0, result.stderr
    lay_task_data(base)
    return base


@pytest.mark.slow
def test_chat_eval_end_to_end(checkpoint_base):
    result = run("nanochat.scripts.chat_eval", ["-i", "base", "-a", "all", "-n", "2", "--max-new-tokens", "8"],
                 checkpoint_base)
    assert result.returncode == 0, result.stderr
    assert "ChatCORE" in result.stdout and "HumanEval" in result.stdout
    saved = json.loads((checkpoint_base / "base_checkpoints" / "d4" / "chat_eval_000001.json").read_text())
    assert set(saved["results"]) == {"ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee"}
    assert saved["counts"]["MMLU"] == [round(saved["results"]["MMLU"] * 2), 2]
    assert saved["ChatCORE"] == pytest.approx(chatcore(saved["results"]))
    shutil.rmtree(checkpoint_base / "tasks" / "mmlu")  # -a all skips what is missing and says so
    result = run("nanochat.scripts.chat_eval", ["-i", "base", "-a", "MMLU,ARC-Easy", "-n", "1"], checkpoint_base)
    assert result.returncode == 0 and "skipped: MMLU: missing data" in result.stdout
    result = run("nanochat.scripts.chat_eval", ["-i", "base", "-a", "MMLU"], checkpoint_base)
    assert result.returncode == 1 and "python -m nanochat.tasks.download mmlu" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_base_eval_end_to_end(checkpoint_base):
    args = ["--bundle-dir", str(BUNDLE), "--bpb-tokens", "512", "--sample-tokens", "4"]
    result = run("nanochat.scripts.base_eval", args, checkpoint_base)
    assert result.returncode == 0, result.stderr
    assert "CORE" in result.stdout and "val bpb" in result.stdout
    saved = json.loads((checkpoint_base / "base_checkpoints" / "d4" / "core_eval_000001.json").read_text())
    assert saved["counts"] == {"fixture_mc": [saved["counts"]["fixture_mc"][0], 5],
                               "fixture_schema": [saved["counts"]["fixture_schema"][0], 3],
                               "fixture_lm": [saved["counts"]["fixture_lm"][0], 3]}
    assert saved["CORE"] == pytest.approx(sum(saved["centered"].values()) / 3)

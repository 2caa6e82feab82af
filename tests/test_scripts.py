"""The runnable scripts as a user runs them: base_train, base_loss, chat_cli and bench_train in real subprocesses.

Every subprocess gets its own NANOCHAT_BASE_DIR (holding a copy of the session's embedded tokenizer and corpus
cache, so nothing is retrained) and proxy variables pointing at a closed port, so any attempt to reach the
network would fail: the default path must work offline. The schedule and sizing helpers of base_train are
also checked directly.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nanochat import training
from nanochat.scripts import base_train

LAPTOP = ["--depth=4", "--max_seq_len=512", "--device_batch_size=1", "--total_batch_size=512", "--num_iterations=1"]
# a smaller model for the tests that train several runs: 2 layers, 64-token rows
TINY = ["--depth=2", "--max_seq_len=64", "--device_batch_size=1", "--total_batch_size=64",
        "--eval_every=-1", "--sample_every=-1"]
TRAIN_KEYS = {"step", "loss", "loss_smooth", "lr_mult", "tok_per_sec", "mfu", "dt_ms", "eta_s", "elapsed_s",
              "total_tokens"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def offline_env(base_dir):
    env = dict(os.environ)
    env["NANOCHAT_BASE_DIR"] = str(base_dir)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env[var] = "http://127.0.0.1:9"  # the discard port: nothing listens, every request fails
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    env.pop("NANOCHAT_DEVICE", None)
    return env


def run_script(name, args, base_dir, timeout=600, stdin=None):
    return subprocess.run([sys.executable, "-m", f"nanochat.scripts.{name}", *args], env=offline_env(base_dir),
                          capture_output=True, text=True, timeout=timeout, input=stdin, cwd=REPO)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def fresh_base_dir(tmp_path_factory, nanochat_base_dir):
    """Returns a factory of empty base dirs that already hold the (expensive) embedded tokenizer and corpus."""
    from nanochat.tokenizer import get_tokenizer

    get_tokenizer()  # trains the embedded tokenizer into the session base dir, once

    def make(name):
        base = tmp_path_factory.mktemp(name)
        for cache in ("tokenizer_embedded", "embedded_corpus"):
            src = nanochat_base_dir / cache
            if src.is_dir():
                shutil.copytree(src, base / cache)
        return base

    return make


@pytest.fixture(scope="module")
def laptop_run(fresh_base_dir):
    """The README's laptop command, run once; later tests read its checkpoint."""
    base = fresh_base_dir("laptop")
    result = run_script("base_train", LAPTOP, base)
    return base, result


# ---------------------------------------------------------------------------------------------------------------
# base_train

def test_laptop_command_trains_saves_then_evaluates(laptop_run):
    base, result = laptop_run
    check_ok(result)
    ckpt = base / "base_checkpoints" / "d4"
    for name in ("model_000001.pt", "optim_000001_rank0.pt", "meta_000001.json", "metrics.jsonl"):
        assert (ckpt / name).is_file(), f"{name} missing; have {sorted(os.listdir(ckpt))}"
    meta = json.loads((ckpt / "meta_000001.json").read_text())
    assert meta["step"] == 1 and meta["model_source"] == "reference"
    assert meta["model_config"] == {"sequence_len": 512, "vocab_size": 4096, "n_layer": 4, "n_head": 2,
                                    "n_kv_head": 2, "n_embd": 256}
    assert meta["loop_state"]["dataloader_state"] is not None

    records = read_jsonl(ckpt / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_bpb" in r]
    assert len(train) == 1 and TRAIN_KEYS <= set(train[0])
    assert train[0]["step"] == 0 and train[0]["total_tokens"] == 512
    assert abs(train[0]["loss"] - math.log(4096)) < 0.5  # a fresh model is close to uniform over the vocab
    assert train[0]["mfu"] is None  # no known peak on CPU: no made-up MFU
    assert train[0]["tok_per_sec"] > 0 and train[0]["eta_s"] == 0
    assert [r["step"] for r in evals] == [0, 1] and all(0 < r["val_bpb"] < 10 for r in evals)

    # nanochat #446: the final checkpoint is on disk before the final evaluation starts
    out = result.stdout
    assert out.index("saved step 1") < out.index("step 00001 | val bpb")
    assert "samples (greedy)" in out


def test_learner_file_copy_of_gpt_trains(fresh_base_dir, tmp_path):
    learner = tmp_path / "learner_gpt.py"
    shutil.copy(os.path.join(REPO, "nanochat", "gpt.py"), learner)
    base = fresh_base_dir("learner")
    result = run_script("base_train", TINY + ["--num_iterations=2", "--model", str(learner)], base)
    check_ok(result)
    assert f"learner GPT from {learner}" in result.stdout
    meta = json.loads((base / "base_checkpoints" / "d2" / "meta_000002.json").read_text())
    assert meta["model_source"] == str(learner)
    losses = [r["loss"] for r in read_jsonl(base / "base_checkpoints" / "d2" / "metrics.jsonl")]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_resume_continues_the_same_loss_curve(fresh_base_dir):
    base = fresh_base_dir("resume")
    metrics = base / "base_checkpoints" / "d2" / "metrics.jsonl"
    check_ok(run_script("base_train", TINY + ["--num_iterations=5", "--save_every=2"], base))
    straight = read_jsonl(metrics)
    assert [r["step"] for r in straight] == [0, 1, 2, 3, 4]

    result = run_script("base_train", TINY + ["--num_iterations=5", "--resume_from_step=2"], base)
    check_ok(result)
    assert "resumed from step 2" in result.stdout
    resumed = read_jsonl(metrics)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]  # one unbroken curve, nothing duplicated
    for a, b in zip(straight, resumed):
        # step 2 checks weights and data position, steps 3-4 the optimizer state (momentum) too
        assert abs(a["loss"] - b["loss"]) < 1e-6, (a, b)
        assert abs(a["loss_smooth"] - b["loss_smooth"]) < 1e-6, (a, b)
    assert resumed[2]["loss"] != resumed[3]["loss"]  # the curve moves: the comparison means something


def test_ctrl_c_saves_a_resumable_checkpoint(fresh_base_dir):
    base = fresh_base_dir("interrupt")
    proc = subprocess.Popen([sys.executable, "-m", "nanochat.scripts.base_train", *TINY, "--num_iterations=100000"],
                            env=offline_env(base), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        deadline = time.time() + 180
        for line in proc.stdout:  # wait until training is under way
            if line.startswith("step 00000/"):
                break
            assert time.time() < deadline
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    m = re.search(r"continue with --resume_from_step=(\d+)", out)
    assert m, out
    step = int(m.group(1))
    assert (base / "base_checkpoints" / "d2" / f"model_{step:06d}.pt").is_file()


@pytest.mark.parametrize("extra, code, message", [
    (["--depth=0"], 2, "--depth: expected a positive integer"),
    (["--device_batch_size=lots"], 2, "--device_batch_size: expected a positive integer or 'auto'"),
    (["--warmup_ratio=2"], 2, "--warmup_ratio must be between 0 and 1"),
    (["--total_batch_size=1000"], 1, "is not a multiple of device_batch_size x max_seq_len"),
    (["--model", "/no/such/learner_gpt.py"], 1, "does not exist"),
    (["--log_every=0"], 2, "--log_every: expected a positive integer"),
    (["--optimizer", "/no/such/learner_muon.py"], 1, "error: --optimizer /no/such/learner_muon.py does not exist"),
    (["--resume_from_step=7"], 1, "--resume_from_step=7: no checkpoint"),
])
def test_bad_flags_give_one_clear_error(fresh_base_dir, extra, code, message):
    base = fresh_base_dir("badflags")
    result = run_script("base_train", LAPTOP + extra, base)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def write_shards(base, make_table):
    """Two shards (train, val) in the base dir's data folder; returns the train shard's path."""
    import pyarrow.parquet as pq

    data = base / "base_data"
    data.mkdir(exist_ok=True)
    for i in range(2):
        pq.write_table(make_table(i), data / f"shard_{i:05d}.parquet", row_group_size=4)
    return data / "shard_00000.parquet"


def texts_table(i):
    import pyarrow as pa

    return pa.table({"text": [f"document {j} of shard {i}: " + "some words to tokenize " * 40 for j in range(16)]})


def test_unreadable_training_data_is_one_line_naming_the_file(fresh_base_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = fresh_base_dir("baddata")
    shard = write_shards(base, lambda i: pa.table({"content": ["no text column here"] * 4}))
    result = run_script("base_train", TINY + ["--num_iterations=1", "--data=shards"], base)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == f"error: {shard} has no 'text' column (its columns: content); a shard holds " \
                                    "one document per row in a string column named 'text'"

    shard = write_shards(base, texts_table)
    data = bytearray(shard.read_bytes())
    chunk = pq.ParquetFile(shard).metadata.row_group(0).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data[start + 2:start + chunk.total_compressed_size - 2] = bytes(chunk.total_compressed_size - 4)
    shard.write_bytes(bytes(data))
    result = run_script("base_train", TINY + ["--num_iterations=1", "--data=shards"], base)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {shard}: row group 0 is unreadable"), lines


def damage_checkpoint(ckpt, how, outside):
    """Damage step 1 of a copied checkpoint the way issue 11 found scripts crashing on it."""
    import torch

    meta_file, model_file = ckpt / "meta_000001.json", ckpt / "model_000001.pt"
    meta = json.loads(meta_file.read_text())
    if how == "not a state dict":
        torch.save([1, 2, 3], model_file)
    elif how == "nan weights":
        weights = torch.load(model_file, weights_only=True)
        weights["lm_head.weight"][0, 0] = float("nan")
        torch.save(weights, model_file)
    elif how == "vocab 1e9":
        meta["model_config"]["vocab_size"] = 10**9
    elif how == "model file outside":
        meta["model_source"] = str(outside)
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize("how, message", [
    ("not a state dict", "model_000001.pt holds a list, not a model state dict"),
    ("nan weights", "model_000001.pt: the weights lm_head.weight hold NaN or infinite values"),
    ("vocab 1e9", "meta_000001.json: its model_config builds transformer.wte.weight with shape [1000000000, 256]"),
    ("model file outside", "meta_000001.json names the model file {outside}, which is outside"),
])
def test_a_damaged_or_foreign_checkpoint_is_one_line_in_chat_cli(laptop_run, tmp_path, how, message):
    base, train_result = laptop_run
    check_ok(train_result)
    copy = tmp_path / "base"
    shutil.copytree(base, copy, ignore=shutil.ignore_patterns("base_data"))
    outside = tmp_path / "friend" / "gpt.py"  # runs nothing but leaves a mark if imported
    outside.parent.mkdir()
    outside.write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n" + open(os.path.join(REPO, "nanochat", "gpt.py")).read())
    damage_checkpoint(copy / "base_checkpoints" / "d4", how, outside)
    result = run_script("chat_cli", ["-i", "base", "-p", "Hi", "-m", "4"], copy)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message.format(outside=outside) in lines[0], lines
    assert not (tmp_path / "pwned").exists()
    if how == "model file outside":  # the learner's say-so runs it, and says which file runs
        trusted = run_script("chat_cli", ["-i", "base", "-p", "Hi", "-m", "4", "--model", str(outside)], copy)
        check_ok(trusted)
        assert f"model code: {outside} (--model)" in trusted.stderr and (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------------------------
# base_loss, chat_cli, bench_train

def test_base_loss_prints_bpb_and_samples(laptop_run):
    base, train_result = laptop_run
    check_ok(train_result)
    result = run_script("base_loss", ["--split_tokens=1024", "--max_tokens=4"], base)
    check_ok(result)
    assert "loaded base checkpoint d4 step 1" in result.stdout  # the guess is announced
    for split in ("train", "val"):
        m = re.search(rf"^{split} bpb: (\d+\.\d+)$", result.stdout, re.M)
        assert m, result.stdout
        assert 0 < float(m.group(1)) < 10
    assert "samples (greedy):" in result.stdout

    missing = run_script("base_loss", ["--model-tag=d99"], base)
    assert missing.returncode == 1 and "error: no checkpoint directory" in missing.stderr
    assert "Traceback" not in missing.stderr
    other_phase = run_script("base_loss", ["-i", "sft"], base)  # -i/--phase picks the checkpoint phase
    assert other_phase.returncode == 1 and "sft_checkpoints" in other_phase.stderr
    assert "Traceback" not in other_phase.stderr


def test_chat_cli_one_shot_from_tiny_checkpoint(laptop_run):
    base, train_result = laptop_run
    check_ok(train_result)
    prompt = "The capital of France is"
    result = run_script("chat_cli", ["-p", prompt, "-t", "0", "-m", "8"], base)
    check_ok(result)
    assert "using the base model" in result.stderr  # no sft checkpoint: the fallback is announced
    assert prompt in result.stdout  # a base model continues the prompt as text
    assert result.stdout.split(prompt, 1)[1].strip()


def test_chat_cli_chat_mode_with_an_sft_checkpoint(laptop_run, tmp_path):
    base, train_result = laptop_run
    check_ok(train_result)
    # the tiny base checkpoint, filed as an sft one: the chat rendering path runs (the words are nonsense)
    chat_base = tmp_path / "chat"
    shutil.copytree(base / "base_checkpoints", chat_base / "sft_checkpoints")
    for cache in ("tokenizer_embedded", "embedded_corpus"):
        if (base / cache).is_dir():
            shutil.copytree(base / cache, chat_base / cache)
    result = run_script("chat_cli", ["-p", "Hello!", "-m", "6", "--seed", "1"], chat_base)
    check_ok(result)
    assert "loaded sft checkpoint d4 step 1" in result.stdout
    assert "using the" not in result.stderr  # sft exists: no fallback
    assert "Hello!" not in result.stdout  # a chat answer does not echo the question


def test_streamer_marks_calculator_calls_and_keeps_characters_whole():
    import io

    from rich.console import Console

    from nanochat.scripts.chat_cli import Streamer
    from nanochat.tokenizer import get_tokenizer

    tok = get_tokenizer()
    special = tok.encode_special
    ids = (tok.encode("It is ") + [special("<|python_start|>")] + tok.encode("12*7") + [special("<|python_end|>"),
           special("<|output_start|>")] + tok.encode("84") + [special("<|output_end|>")] + tok.encode(". Café ☕ ok"))
    buf = io.StringIO()
    streamer = Streamer(tok, Console(file=buf, color_system=None, width=200))
    for token in ids:  # one at a time, as they are generated
        streamer.feed(token)
    streamer.finish()
    assert buf.getvalue() == "It is [calc 12*7][= 84]. Café ☕ ok\n"


def test_chat_cli_interactive_commands(laptop_run):
    base, train_result = laptop_run
    check_ok(train_result)
    result = run_script("chat_cli", ["-i", "base", "-m", "4"], base, stdin="hello\nclear\n\nquit\nnever read\n")
    check_ok(result)
    assert "hello" in result.stdout  # a base model's turn echoes the text it continues
    assert "(new conversation)" in result.stdout
    assert "never read" not in result.stdout  # nothing after 'quit' is read
    eof = run_script("chat_cli", ["-i", "base", "-m", "4"], base, stdin="hello\n")  # Ctrl-D after one turn
    check_ok(eof)


def test_chat_cli_without_checkpoint_says_how_to_train_one(tmp_path):
    result = run_script("chat_cli", ["-p", "hi"], tmp_path)
    assert result.returncode == 1
    assert "no checkpoint" in result.stderr
    assert "python -m nanochat.scripts.base_train --depth=4" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_train_prints_a_table(tmp_path):
    result = run_script("bench_train", ["--configs=1:32:2", "--warmup=0", "--rounds=1", "--compile=off"], tmp_path)
    check_ok(result)
    row = result.stdout.strip().splitlines()[-1].split()
    assert row[:3] == ["1", "32", "2"] and float(row[6].replace(",", "")) > 0  # tok/s


# ---------------------------------------------------------------------------------------------------------------
# base_train's recipe, directly

def test_lr_schedule_warmup_flat_warmdown():
    lrm = [training.lr_multiplier(s, 100, 0.1, 0.2, 0.0) for s in range(100)]
    assert lrm[0] == pytest.approx(0.1) and lrm[9] == pytest.approx(1.0)  # linear warmup over 10 steps
    assert all(x == 1.0 for x in lrm[10:81])
    assert all(a > b for a, b in zip(lrm[80:], lrm[81:]))  # strictly down through the warmdown
    assert lrm[99] == pytest.approx(0.05)
    assert training.lr_multiplier(99, 100, 0.0, 0.2, 0.5) == pytest.approx(0.525)  # towards final_lr_frac
    assert training.muon_momentum(0) == pytest.approx(0.85)
    assert training.muon_momentum(150) == pytest.approx(0.90)
    assert training.muon_momentum(10_000) == pytest.approx(0.95)


def test_model_shape_from_depth():
    for depth in range(1, 41):
        kw = base_train.model_config_kwargs(depth, 128, 1000)
        head_dim, rem = divmod(kw["n_embd"], kw["n_head"])
        assert rem == 0 and head_dim % 2 == 0 and kw["n_layer"] == depth and kw["n_kv_head"] == kw["n_head"]
        if depth % 2 == 0:
            assert head_dim == 128
    assert base_train.model_config_kwargs(20, 2048, 65536)["n_head"] == 10  # nanochat's d20: 1280 wide, 10 heads


def test_gradient_accumulation_must_divide():
    assert base_train.grad_accum_steps(524288, 32, 2048, 8) == 1
    assert base_train.grad_accum_steps(524288, 16, 2048, 1) == 16
    with pytest.raises(SystemExit, match="not a multiple"):
        base_train.grad_accum_steps(1000, 1, 512, 1)


def test_cpu_auto_batch_size_stays_within_the_memory_budget(monkeypatch):
    kw = base_train.model_config_kwargs(4, 512, 4096)

    class Config:
        pass

    config = Config()
    config.__dict__.update(kw)
    per_row = 4 * 512 * (16 * 4 * 256 + 5 * 4096)
    monkeypatch.setattr(base_train, "available_memory_bytes", lambda: 2 * (10.5 * per_row + 16 * 1000))
    rows, _, budget = base_train.estimate_cpu_batch_size(config, num_params=1000, max_rows=64, local_world_size=1)
    assert rows == 8 and rows * per_row <= budget < 2 * rows * per_row
    rows, _, _ = base_train.estimate_cpu_batch_size(config, num_params=1000, max_rows=4, local_world_size=1)
    assert rows == 4  # never more rows than the total batch holds
    monkeypatch.setattr(base_train, "available_memory_bytes", lambda: 0)
    assert base_train.estimate_cpu_batch_size(config, 1000, 64, 1)[0] == 1  # the smallest batch is always tried


def test_truncate_metrics_keeps_the_curve_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "val_bpb": 3.0}] + [{"step": s, "loss": 8.0 - s} for s in range(4)] + \
            [{"step": 2, "val_bpb": 2.5}, {"step": 4, "val_bpb": 2.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + "{torn line\n")
    training.truncate_metrics(str(path), 2)
    assert read_jsonl(path) == [{"step": 0, "val_bpb": 3.0}, {"step": 0, "loss": 8.0}, {"step": 1, "loss": 7.0}]


@pytest.mark.slow
def test_torchrun_two_ranks_train_and_resume_exactly(fresh_base_dir):
    base = fresh_base_dir("ddp")
    args = ["--depth=2", "--max_seq_len=64", "--device_batch_size=1", "--total_batch_size=256",
            "--num_iterations=4", "--eval_every=2", "--sample_every=-1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "nanochat.scripts.base_train"]
    env = offline_env(base)
    first = subprocess.run(torchrun + args + ["--save_every=2"], env=env, capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "cpu x 2 rank(s)" in first.stdout and "2 accumulation step(s)" in first.stdout
    ckpt = base / "base_checkpoints" / "d2"
    assert (ckpt / "optim_000002_rank1.pt").is_file()
    straight = [r for r in read_jsonl(ckpt / "metrics.jsonl") if "loss" in r]
    second = subprocess.run(torchrun + args + ["--resume_from_step=2"], env=env, capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = [r for r in read_jsonl(ckpt / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(straight, resumed):
        assert abs(a["loss"] - b["loss"]) < 1e-6, (a, b)

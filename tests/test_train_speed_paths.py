"""base_train's speed choices, as a user sees them: the loss curve of a seeded run is the one the plain code
gave, torch.compile is chosen only where it pays and its time is printed apart from the steps, short runs
do not spend their time evaluating (nor compiling again for it), the host reads the loss only on the steps it
reports (--log_every), and the next batches are cut in a background thread while a step runs.

REFERENCE_LOSSES are the losses of `seeded_losses` below with the optimizers as they were before the speed work
(commit 7327014: fp32 Newton–Schulz one matrix at a time, unfused AdamW on CPU): a depth-2 model as base_train
builds it, trained for 12 steps with base_train's own step (`accumulate_gradients`, `optimizer_step`, the lr and
momentum schedules) on arithmetic-progression token rows, which it learns quickly (the loss falls from 5.5 to
2.3), so a change in the update shows. The rows are generated, not read from the corpus, so the curve does not
move when the corpus or the tokenizer does.
"""

import json
import os
import re
import subprocess
import sys
import threading

import pytest
import torch

from nanochat.gpt import GPT, GPTConfig
from nanochat.scripts import base_train
from nanochat.training import accumulate_gradients, lr_multiplier, muon_momentum, optimizer_step

REFERENCE_LOSSES = [5.5451788902282715, 5.364292144775391, 4.863798141479492, 4.777738571166992, 3.913430690765381,
                    3.881606340408325, 3.1912927627563477, 3.010450601577759, 2.796457529067993, 2.453763484954834,
                    2.4126179218292236, 2.2873082160949707]
# fused AdamW and batched (or bf16) Newton–Schulz round differently from the plain code: measured 2e-7 (fp32) and
# 4e-4 (bf16) at most over these steps, while a real change of the update (scale, momentum, lr) moves it far more
LOSS_TOLERANCE = 5e-3


def progression_batches(steps, rows, seq, vocab, seed=0):
    """Rows (start + stride * k) mod vocab with a random start and stride per row, as (inputs, targets, None)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        start = torch.randint(0, vocab, (rows, 1), generator=g)
        stride = torch.randint(1, 8, (rows, 1), generator=g)
        tokens = (start + stride * torch.arange(seq + 1)) % vocab
        batches.append((tokens[:, :-1], tokens[:, 1:], None))
    return batches


def seeded_losses(make_optimizers, steps=12):
    torch.manual_seed(42)
    model = GPT(GPTConfig(**base_train.model_config_kwargs(2, 64, 256)))
    model.init_weights()
    optimizers = make_optimizers(model)
    batches = iter(progression_batches(steps + 1, 8, 64, 256))
    batch, losses = next(batches), []
    for step in range(steps):
        loss, _, batch = accumulate_gradients(model, batches, batch, 1, torch.autocast("cpu", enabled=False))
        optimizer_step(model, optimizers, optimizers[1], lr_multiplier(step, steps, 0.0, 0.2, 0.0),
                       muon_momentum(step), 1.0)
        losses.append(loss.item())
    return losses


def default_optimizers(model):
    """What base_train steps with on this CPU for a short run (no compile)."""
    compiled = base_train.choose_compile(None, "cpu", 1e9)
    return base_train.fastest_optimizers(model.setup_optimizers(), "cpu", compiled)


def cuda_precision_optimizers(model):
    """The same, with Newton–Schulz in bfloat16 as on CUDA."""
    adamw, muon = default_optimizers(model)
    muon.ns_dtype = torch.bfloat16
    return [adamw, muon]


@pytest.mark.parametrize("make_optimizers", [default_optimizers, cuda_precision_optimizers], ids=["fp32", "bf16"])
def test_the_loss_curve_is_todays(make_optimizers):
    losses = seeded_losses(make_optimizers)
    worst = max(abs(a - b) for a, b in zip(losses, REFERENCE_LOSSES))
    assert worst < LOSS_TOLERANCE, (losses, REFERENCE_LOSSES)


TINY_RUN = ["--depth=2", "--max_seq_len=64", "--device_batch_size=2", "--total_batch_size=128",
            "--num_iterations=3", "--eval_every=-1", "--sample_every=-1", "--data=embedded"]


def train_records(tag, extra=(), env=None):
    """Run base_train in this session's base dir (its embedded tokenizer is trained once); return the finished
    process (stderr merged into stdout, unbuffered, so the two keep their order) and the training records of its
    metrics.jsonl."""
    result = subprocess.run([sys.executable, "-m", "nanochat.scripts.base_train", *TINY_RUN, *extra,
                             f"--model-tag={tag}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=1800, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    assert result.returncode == 0 and "Traceback" not in result.stdout, result.stdout
    metrics = os.path.join(os.environ["NANOCHAT_BASE_DIR"], "base_checkpoints", tag, "metrics.jsonl")
    with open(metrics, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return result, [r for r in records if "loss" in r]


def train_losses(tag, extra=(), env=None):
    result, records = train_records(tag, extra, env)
    return result, [r["loss"] for r in records]


@pytest.mark.slow
def test_compile_time_is_printed_before_step_0_and_the_curve_is_unchanged():
    eager, eager_losses = train_losses("speed_eager")
    assert "| compile: False" in eager.stdout and "torch.compile:" not in eager.stdout  # short CPU run: eager
    # evaluated and sampled along the way: the evaluation graph is compiled before step 0 with the training
    # graph, and nothing compiles after that (dynamo logs every recompile: TORCH_LOGS=recompiles)
    result, losses = train_losses("speed_compiled", ["--compile", "--eval_every=2", "--sample_every=2"],
                                  env={"TORCH_LOGS": "recompiles"})
    out = result.stdout
    assert "| compile: True" in out
    m = re.search(r"^torch\.compile: (\d+\.\d)s compiling before step 0 \(training graph (\d+\.\d)s, "
                  r"evaluation graph (\d+\.\d)s; not counted in any step's time\)", out, re.M)
    assert m and float(m.group(2)) > 0 and float(m.group(3)) > 0, out
    assert m.start() < out.index("step 00000/")  # printed before the first step's line
    assert max(abs(a - b) for a, b in zip(losses, eager_losses)) < LOSS_TOLERANCE
    assert "step 00002 | val bpb" in out and "samples (greedy)" in out
    assert "Recompiling" not in out[m.end():], out[m.end():]


def test_log_every_reports_fewer_steps_of_the_same_curve():
    # 7 steps, a line every 3: after the first step (alone: it pays for warm-up), then steps 3 and 6 of the
    # count (records 2 and 5), and the last step before the final save
    _, every = train_records("log_every_1", ["--num_iterations=7"])
    result, sparse = train_records("log_every_3", ["--num_iterations=7", "--log_every=3"])
    assert [r["step"] for r in every] == list(range(7))  # the default on CPU: every step
    assert [r["step"] for r in sparse] == [0, 2, 5, 6]
    lines = [line for line in result.stdout.splitlines() if re.match(r"step \d{5}/\d{5} ", line)]
    assert [line[5:16] for line in lines] == ["00000/00007", "00002/00007", "00005/00007", "00006/00007"]
    assert "a progress line every 3 step(s)" in result.stdout
    by_step = {r["step"]: r for r in every}
    for r in sparse:  # the same run, read less often: each reported step's loss and smoothed loss are the same
        assert r["loss"] == by_step[r["step"]]["loss"]
        assert abs(r["loss_smooth"] - by_step[r["step"]]["loss_smooth"]) < 1e-9
        assert r["total_tokens"] == (r["step"] + 1) * 128 and r["dt_ms"] > 0 and r["tok_per_sec"] > 0
    assert sparse[-1]["elapsed_s"] >= sparse[-1]["dt_ms"] / 1000 * 3


def test_log_every_defaults_by_device():
    assert base_train.default_log_every(None, "cpu") == 1
    assert base_train.default_log_every(None, "cuda") == base_train.LOG_EVERY_ACCELERATOR
    assert base_train.default_log_every(None, "mps") == base_train.LOG_EVERY_ACCELERATOR
    assert base_train.default_log_every(7, "cuda") == 7


def test_compile_is_chosen_where_it_pays():
    assert base_train.choose_compile(None, "cuda", 1.0) is True
    assert base_train.choose_compile(None, "cpu", base_train.COMPILE_MIN_FLOPS / 10) is False
    assert base_train.choose_compile(None, "cpu", base_train.COMPILE_MIN_FLOPS * 2) is True
    assert base_train.choose_compile(False, "cuda", 1e30) is False  # --no-compile wins
    assert base_train.choose_compile(True, "cpu", 1.0) is True  # --compile wins
    # depth 4, seq 512, 4096-token steps with the default horizon (20 tokens per parameter): compiled on CPU too
    with torch.device("meta"):
        model = GPT(GPTConfig(**base_train.model_config_kwargs(4, 512, 4096)))
    args = base_train.parse_args(["--depth=4", "--max_seq_len=512", "--total_batch_size=4096"])
    steps, _ = base_train.horizon(args, sum(p.numel() for p in model.parameters()), model.estimate_flops())
    assert base_train.choose_compile(None, "cpu", steps * 4096 * model.estimate_flops()) is True
    # and a 100-step run of it is too short to repay the compile time
    assert base_train.choose_compile(None, "cpu", 100 * 4096 * model.estimate_flops()) is False
    # the flag reaches the command line both ways
    assert base_train.parse_args(["--no-compile"]).compile is False
    assert base_train.parse_args([]).compile is None


def test_evaluation_stays_a_small_part_of_a_short_run():
    # a 30-step run of 4096-token steps, evaluated at the end only: a quarter of its tokens, not 20 batches
    assert base_train.default_eval_tokens(4096, 30, 250) == 30 * 4096 // 4
    # a long run keeps nanochat's 20 batches per evaluation
    assert base_train.default_eval_tokens(4096, 100_000, 250) == 20 * 4096
    assert base_train.default_eval_tokens(4096, 5, -1) == 5 * 4096 // 4
    assert base_train.default_eval_tokens(64, 1, 250) == 16


def test_base_train_uses_the_fast_optimizers():
    model = GPT(GPTConfig(sequence_len=16, vocab_size=64, n_layer=1, n_head=1, n_kv_head=1, n_embd=32))
    model.init_weights()
    adamw, muon = base_train.fastest_optimizers(model.setup_optimizers(), "cpu", compiled=True)
    assert isinstance(adamw, torch.optim.AdamW) and all(g["fused"] for g in adamw.param_groups)
    assert muon.ns_compile is False and muon.ns_dtype == torch.float32  # on CPU: eager fp32 Newton–Schulz


def test_the_loader_pins_memory_only_for_cuda():
    # on CPU a batch is used where it is made: no pinned staging copy (that needs CUDA), no asynchronous copy
    from nanochat.dataloader import tokenizing_distributed_data_loader_with_state

    x, y, _ = next(tokenizing_distributed_data_loader_with_state(2, 16, "train", device="cpu", source="embedded"))
    assert x.device.type == "cpu" and not x.is_pinned() and not y.is_pinned()
    if torch.cuda.is_available():
        x, y, _ = next(tokenizing_distributed_data_loader_with_state(2, 16, "train", device="cuda", source="embedded"))
        assert x.is_cuda and y.is_cuda


# ---------------------------------------------------------------------------------------------------------------
# the background batches (nanochat/prefetch.py)

def test_prefetched_batches_are_the_loaders():
    from nanochat.dataloader import tokenizing_distributed_data_loader_with_state as loader
    from nanochat.prefetch import Prefetcher

    plain = loader(2, 16, "train", device="cpu", source="embedded")
    with Prefetcher(loader(2, 16, "train", device="cpu", source="embedded")) as ahead:
        for _ in range(6):
            (x, y, state), (px, py, pstate) = next(plain), next(ahead)
            assert torch.equal(x, px) and torch.equal(y, py) and state == pstate


def counting(n, produced, gate=None):
    """A generator of 0..n-1 recording what it produced; `gate` (an Event) holds it before item 3."""
    try:
        for i in range(n):
            if i == 3 and gate is not None:
                gate.wait()
            produced.append(i)
            yield i
    finally:
        produced.append("closed")


def test_the_thread_runs_at_most_depth_items_ahead_and_close_stops_it():
    from nanochat.prefetch import Prefetcher

    produced = []
    fetch = Prefetcher(counting(1000, produced), depth=2)
    assert next(fetch) == 0
    # the thread fills the queue (items 1, 2) and then holds item 3 until there is room: never more
    deadline = threading.Event()
    for _ in range(200):
        if len(produced) >= 4:
            break
        deadline.wait(0.01)
    assert produced[:4] == [0, 1, 2, 3] and len(produced) == 4
    fetch.close()  # returns with the thread gone and the generator closed (in its own thread)
    assert not fetch._thread.is_alive() and produced[-1] == "closed"
    with pytest.raises(StopIteration):
        next(fetch)


def test_a_loader_error_is_raised_where_its_batch_would_have_been():
    from nanochat.prefetch import Prefetcher

    class ShardError(Exception):
        pass

    def failing():
        yield "a"
        yield "b"
        raise ShardError("row group 3 is unreadable")

    fetch = Prefetcher(failing())
    assert [next(fetch), next(fetch)] == ["a", "b"]
    with pytest.raises(ShardError, match="row group 3") as e:
        next(fetch)
    assert any(frame.name == "failing" for frame in __import__("traceback").extract_tb(e.value.__traceback__))
    with pytest.raises(StopIteration):
        next(fetch)
    fetch.close()
    assert list(Prefetcher(iter([1, 2, 3]))) == [1, 2, 3]  # a finite loader ends with StopIteration


def test_close_while_the_loader_is_busy_waits_for_it():
    from nanochat.prefetch import Prefetcher

    produced, gate = [], threading.Event()
    fetch = Prefetcher(counting(10, produced, gate), depth=8)
    assert next(fetch) == 0
    closer = threading.Thread(target=fetch.close)
    closer.start()
    closer.join(timeout=0.2)
    assert closer.is_alive()  # the loader is inside its item 3: close waits for it ...
    gate.set()
    closer.join(timeout=30)
    assert not closer.is_alive() and produced[-1] == "closed" and 4 not in produced  # ... and it stops there

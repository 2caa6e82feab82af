"""The runs screen's plumbing without training: the command line (one process, or torchrun per GPU), tailing a
metrics.jsonl that is appended to, cut mid-line and truncated by a new run, and the list of runs on disk."""

import json
import os
import sys
import time

from workbench.tui.services import runs
from workbench.tui.services.runs import MetricsTail, count_gpus, scan_runs, train_command


def test_one_process_on_cpu_and_torchrun_with_several_gpus():
    cmd = train_command("reference", 20, "d4", gpus=0)
    assert cmd[:3] == [sys.executable, "-m", "nanochat.scripts.base_train"]
    assert {"--depth=4", "--max_seq_len=512", "--device_batch_size=1", "--total_batch_size=512",
            "--num_iterations=20", "--model=reference", "--model_tag=d4"} <= set(cmd)
    assert train_command("reference", 20, "d4", gpus=1)[:3] == cmd[:3]
    multi = train_command("/ws/learner_gpt.py", 5, "d4-learner", gpus=4)
    assert multi[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert multi[5:8] == ["-m", "nanochat.scripts.base_train", "--"] and "--model=/ws/learner_gpt.py" in multi


def test_gpu_count_reads_the_driver_and_respects_cuda_visible_devices(monkeypatch, tmp_path):
    gpus = tmp_path / "gpus"  # stands in for /proc/driver/nvidia/gpus: one folder per GPU (its PCI address)
    for address in ("0000:01:00.0", "0000:41:00.0", "0000:81:00.0", "0000:c1:00.0"):
        (gpus / address).mkdir(parents=True)
    monkeypatch.setattr(runs, "NVIDIA_GPUS_DIR", str(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert count_gpus() == 4
    for visible, expected in (("0,2", 2), ("1", 1), ("", 0), ("-1", 0), ("0,1,2,3,4,5", 4)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert count_gpus() == expected, visible
    monkeypatch.setattr(runs, "NVIDIA_GPUS_DIR", str(tmp_path / "no-driver"))  # macOS, or no NVIDIA driver
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert count_gpus() == 0


def test_the_metrics_tail_reads_whole_lines_and_restarts_after_truncation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 0, "loss": 9.0}) + "\n")
    old = time.time() - 100
    os.utime(path, (old, old))
    tail = MetricsTail(path, since=time.time())
    assert tail.read_new() == []  # the previous run's file, not touched since this run started
    with open(path, "w") as f:  # the new run truncates it and starts writing
        f.write(json.dumps({"step": 0, "loss": 8.3}) + "\n" + '{"step": 1, "lo')
    assert tail.read_new() == [{"step": 0, "loss": 8.3}]  # the half-written line waits
    with open(path, "a") as f:
        f.write('ss": 8.1}\n' + json.dumps({"step": 1, "val_bpb": 3.2}) + "\n")
    assert tail.read_new() == [{"step": 1, "loss": 8.1}, {"step": 1, "val_bpb": 3.2}]
    path.write_text(json.dumps({"step": 0, "loss": 7.0}) + "\n")  # truncated again: a newer run
    assert tail.read_new() == [{"step": 0, "loss": 7.0}]


def test_runs_on_disk_are_listed_with_steps_model_and_last_loss(tmp_path):
    run = tmp_path / "base_checkpoints" / "d4-learner"
    run.mkdir(parents=True)
    for step in (10, 20):
        (run / f"model_{step:06d}.pt").write_bytes(b"")
        (run / f"meta_{step:06d}.json").write_text(json.dumps({"model_source": "/ws/learner_gpt.py"}))
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 0, "loss": 8.0}, {"step": 19, "loss": 6.5}, {"step": 20, "val_bpb": 2.9}]) + "\nnot json\n")
    (tmp_path / "base_checkpoints" / "empty").mkdir()
    [info] = scan_runs(tmp_path)
    assert (info.tag, info.steps, info.model_source, info.last_loss, info.val_bpb) == \
        ("d4-learner", [10, 20], "/ws/learner_gpt.py", 6.5, 2.9)
    assert scan_runs(tmp_path, "sft") == []

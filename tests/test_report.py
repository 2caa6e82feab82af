"""The report card: sections, stage times, cost, and the BASE/MID/SFT/RL table from the eval result files."""

import json
import os
import subprocess
import sys

import pytest

from nanochat import report


@pytest.fixture
def base_dir(tmp_path, monkeypatch, nanochat_base_dir):
    """An empty base dir that shares the session's embedded tokenizer (trained once per session)."""
    from nanochat.tokenizer import get_tokenizer

    get_tokenizer()
    (tmp_path / "tokenizer_embedded").symlink_to(nanochat_base_dir / "tokenizer_embedded")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    return tmp_path


def write_result(base_dir, phase, name, payload, tag="d4"):
    folder = base_dir / f"{phase}_checkpoints" / tag
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(payload))


def test_table_reads_core_and_chat_results_into_their_columns(base_dir):
    write_result(base_dir, "base", "core_eval_000100.json", {"results": {"hellaswag": 0.3}, "CORE": 0.21})
    write_result(base_dir, "mid", "chat_eval_000050.json",
                 {"results": {"ARC-Easy": 0.4, "HumanEval": 0.05}, "ChatCORE": None,
                  "skipped": {"GSM8K": "GSM8K: missing data /x/test.parquet; fetch it with: ..."}})
    write_result(base_dir, "sft", "chat_eval_000010.json", {"results": {"ARC-Easy": 0.2}})
    write_result(base_dir, "sft", "chat_eval_000020.json", {"results": {"ARC-Easy": 0.5}, "ChatCORE": 0.1})
    table = report.summary_table()
    assert table["CORE"] == {"base": 0.21, "mid": None, "sft": None, "rl": None}
    assert table["ARC-Easy"] == {"base": None, "mid": 0.4, "sft": 0.5, "rl": None}  # sft: the latest step
    assert table["ChatCORE"]["sft"] == 0.1 and table["ChatCORE"]["mid"] is None
    assert report.summary_markdown(table)[2] == "| CORE | 0.2100 | - | - | - |"
    text = report.render()
    assert "| ARC-Easy | - | 0.4000 | 0.5000 | - |" in text
    assert "- mid: not evaluated: GSM8K: missing data" in text


def test_sections_and_times_land_in_the_report(base_dir):
    report.reset()
    report.log_section("mid", "Mid-training", {"steps": 60, "val bpb": 1.23456, "data": "offline"})
    report.record_time("base", 125.0)
    report.record_time("mid", 61.0)
    path = report.write_report()
    text = open(path).read()
    assert "## Mid-training" in text and "- steps: 60" in text and "- val bpb: 1.2346" in text
    assert "| base | 2m05s |" in text and "| **total** | **3m06s** |" in text
    assert "## Environment" in text and "## Tokenizer" in text and "| Metric | BASE | MID | SFT | RL |" in text
    report.reset()  # a new run forgets the last one's sections
    assert not os.path.exists(os.path.join(report.report_dir(), "mid.json"))


def test_cost_is_gpu_hours_times_the_price():
    lines = report.time_and_cost({"base": 3000.0, "mid": 600.0}, {"gpu_count": 8, "gpu": "H100"}, None, 3.0)
    assert "- estimated cost: $24.00 (8 x H100 for 1.00 h at $3.00 per GPU-hour)" in lines
    lines = report.time_and_cost({"base": 60.0}, {"gpu_count": 0}, None, 3.0)
    assert lines[-1].startswith("- estimated cost: no GPU")


def test_unknown_stage_is_refused(base_dir):
    with pytest.raises(ValueError, match="unknown report stage"):
        report.log_section("bogus", "x", {})
    result = subprocess.run([sys.executable, "-m", "nanochat.report", "time", "bogus", "3"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "STAGE one of" in result.stderr and "Traceback" not in result.stderr


def test_a_training_stage_without_a_section_is_summarised_from_its_metrics(base_dir):
    folder = base_dir / "base_checkpoints" / "d4"
    folder.mkdir(parents=True)
    records = [{"step": 0, "val_bpb": 2.0},
               {"step": 0, "loss": 5.0, "tok_per_sec": 100.0, "mfu": 0.1, "total_tokens": 10, "elapsed_s": 3.0},
               {"step": 1, "loss": 4.0, "tok_per_sec": 200.0, "mfu": 0.3, "total_tokens": 20, "elapsed_s": 6.0},
               {"step": 2, "loss": 3.0, "tok_per_sec": 400.0, "mfu": 0.5, "total_tokens": 30, "elapsed_s": 9.0},
               {"step": 3, "val_bpb": 1.5}]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = report.metrics_summary("base")
    assert summary["steps"] == 3 and summary["tokens"] == 30 and summary["final loss"] == 3.0
    assert summary["mean tok_per_sec (after step 0)"] == 300.0  # step 0 pays for warm-up and compilation
    assert summary["mean mfu (after step 0)"] == pytest.approx(0.4)
    assert summary["last val bpb"] == 1.5 and summary["min val bpb"] == 1.5
    assert "## base training (from its metrics.jsonl)" in report.render()


def test_a_summary_counts_steps_by_number_when_records_are_sparse(base_dir):
    folder = base_dir / "base_checkpoints" / "d4"
    folder.mkdir(parents=True)
    records = [{"step": s, "loss": 5.0 - s / 10, "total_tokens": 10 * (s + 1)} for s in (0, 10, 20, 29)]  # --log_every 10
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert report.metrics_summary("base")["steps"] == 30

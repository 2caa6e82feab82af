"""Training runs for the TUI's runs screen: the base_train command line, tailing its metrics.jsonl, and the
runs already on disk. Nothing here imports torch: the training itself runs in its own process.
"""

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path


def base_dir() -> Path:
    """$NANOCHAT_BASE_DIR, else ~/.cache/nanochat: the same rule as nanochat.common.get_base_dir, which imports torch."""
    return Path(os.environ.get("NANOCHAT_BASE_DIR") or Path.home() / ".cache" / "nanochat")


def train_command(model: str, steps: int, tag: str, gpus: int = 0) -> list[str]:
    """A tiny depth-4 base_train run; one process per GPU through torchrun when there are several GPUs."""
    # a short validation (4 sequences) keeps the tiny run quick on a laptop and still reports val bpb
    args = ["--depth=4", "--max_seq_len=512", "--device_batch_size=1", "--total_batch_size=512",
            f"--num_iterations={steps}", f"--model={model}", f"--model_tag={tag}", "--sample_every=-1",
            "--eval_tokens=2048"]
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                "-m", "nanochat.scripts.base_train", "--", *args]
    return [sys.executable, "-m", "nanochat.scripts.base_train", *args]


NVIDIA_GPUS_DIR = "/proc/driver/nvidia/gpus"  # the driver's entry per GPU (Linux)


def count_gpus() -> int:
    """NVIDIA GPUs this process may use, without importing torch: the driver's /proc entries (Linux), limited
    by CUDA_VISIBLE_DEVICES when it is set. 0 elsewhere (macOS, no driver): runs then use one process."""
    try:
        present = len(os.listdir(NVIDIA_GPUS_DIR))
    except OSError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return min(present, len(ids))
    return present


class MetricsTail:
    """Reads the complete JSON lines appended to a metrics.jsonl since `since` (a run start, time.time())."""

    def __init__(self, path: Path, since: float):
        self.path, self.since, self.offset, self._partial = Path(path), since, 0, b""

    def read_new(self) -> list[dict]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        if st.st_mtime < self.since - 1:  # the previous run's file, not yet truncated by the new run
            return []
        if st.st_size < self.offset:  # truncated: a new run started the curve again
            self.offset, self._partial = 0, b""
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records


@dataclass
class RunInfo:
    tag: str
    directory: Path
    steps: list[int]  # steps with a saved model
    model_source: str
    last_loss: float | None
    val_bpb: float | None


def scan_runs(base_dir: Path, source: str = "base") -> list[RunInfo]:
    """Every checkpoint folder of `source` (base, mid, sft, rl), newest first. Never imports torch."""
    root = Path(base_dir) / f"{source}_checkpoints"
    runs = []
    if not root.is_dir():
        return runs
    for directory in root.iterdir():
        if not directory.is_dir():
            continue
        steps = sorted(int(m.group(1)) for p in directory.glob("model_*.pt")
                       if (m := re.fullmatch(r"model_(\d+)\.pt", p.name)))
        model_source, last_loss, val_bpb = "reference", None, None
        if steps:
            try:
                meta = json.loads((directory / f"meta_{steps[-1]:06d}.json").read_text())
                model_source = str(meta.get("model_source", "reference"))
            except (OSError, ValueError):
                model_source = "?"
        try:
            with open(directory / "metrics.jsonl", encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("loss") is not None:
                        last_loss = record["loss"]
                    if record.get("val_bpb") is not None:
                        val_bpb = record["val_bpb"]
        except OSError:
            pass
        if steps or last_loss is not None:
            runs.append(RunInfo(directory.name, directory, steps, model_source, last_loss, val_bpb))
    runs.sort(key=lambda r: os.path.getmtime(r.directory), reverse=True)
    return runs




@dataclass
class Checkpoint:
    phase: str
    tag: str
    step: int
    model_source: str  # "reference", or the learner file the model came from

    @property
    def key(self) -> str:
        return f"{self.phase}:{self.tag}:{self.step}"


# nanochat.checkpoint_manager.PHASES (which imports torch), chat-tuned checkpoints first
CHAT_FIRST = ("sft", "rl", "mid", "base")


def list_checkpoints(base_dir: Path) -> list[Checkpoint]:
    """Every saved step of every checkpoint folder, chat-tuned phases first and each folder's newest step first."""
    return [Checkpoint(phase, run.tag, step, run.model_source)
            for phase in CHAT_FIRST for run in scan_runs(base_dir, phase) for step in reversed(run.steps)]

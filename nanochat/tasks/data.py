"""Where task data lives: the files each dataset needs under $NANOCHAT_BASE_DIR/tasks/, and reading them.

A task asks `require(group, name)` for a file when it first needs its data. A missing file is a
`MissingDataError` whose one-line message names the file and the command that fetches it
(`python -m nanochat.tasks.download GROUP`). Nothing here touches the network: downloading lives in
`nanochat.tasks.download`, and tests lay small fixture files in the same places.

Remote files are the parquet files the Hugging Face hub serves for each dataset (the hub converts every
dataset to parquet), fetched as plain HTTP files; `$NANOCHAT_TASKS_URL` points at a mirror instead.
"""

import json
import os
import random
from pathlib import Path

from nanochat.tasks.common import MissingDataError

DEFAULT_TASKS_URL = "https://huggingface.co/datasets"

# group -> {local name: path under the hub URL}. A group is what one download command fetches.
_HF = "resolve/main"
SOURCES: dict[str, dict[str, str]] = {
    "gsm8k": {
        "train.parquet": f"openai/gsm8k/{_HF}/main/train-00000-of-00001.parquet",
        "test.parquet": f"openai/gsm8k/{_HF}/main/test-00000-of-00001.parquet",
    },
    "arc": {
        f"{subset}/{split}.parquet": f"allenai/ai2_arc/{_HF}/{subset}/{split}-00000-of-00001.parquet"
        for subset in ("ARC-Easy", "ARC-Challenge")
        for split in ("train", "validation", "test")
    },
    "mmlu": {
        **{f"all/{split}.parquet": f"cais/mmlu/{_HF}/all/{split}-00000-of-00001.parquet"
           for split in ("dev", "validation", "test")},
        "auxiliary_train/train.parquet": f"cais/mmlu/{_HF}/auxiliary_train/train-00000-of-00001.parquet",
    },
    "smoltalk": {
        f"{split}.parquet": f"HuggingFaceTB/smol-smoltalk/{_HF}/data/{split}-00000-of-00001.parquet"
        for split in ("train", "test")
    },
}


def tasks_dir() -> Path:
    from nanochat.common import get_base_dir  # torch-importing module: only when a task really reads data

    return Path(get_base_dir()) / "tasks"


def tasks_url() -> str:
    return os.environ.get("NANOCHAT_TASKS_URL", DEFAULT_TASKS_URL).rstrip("/")


def local_path(group: str, name: str) -> Path:
    return tasks_dir() / group / name


def download_command(group: str) -> str:
    return f"python -m nanochat.tasks.download {group}"


def require(group: str, name: str, who: str) -> Path:
    """The local path of one data file, or MissingDataError saying which file is missing and how to fetch it."""
    path = local_path(group, name)
    if not path.is_file():
        raise MissingDataError(f"{who}: missing data {path}; fetch it with: {download_command(group)}")
    return path


def read_parquet_rows(path: Path, seed: int | None = 42) -> list[dict]:
    """All rows of a parquet file as dicts, shuffled with a fixed seed (None: file order).

    Shuffling once at load makes any prefix (`-n 100`, stop=100) a fair sample of a file sorted by subject.
    """
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return rows


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per non-blank line; a bad line is a ValueError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from None
    return rows

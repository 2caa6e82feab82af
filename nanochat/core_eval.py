"""The CORE metric (DCLM): 22 few-shot tasks scored from a base model's losses, as nanochat reports it.

The DCLM eval bundle holds `core.yaml` (each task's label, data file, number of few-shot examples, type and
continuation delimiter), `eval_meta_data.csv` (each task's random baseline, in percent) and the data as JSONL
under `eval_data/`. Three task types:

- multiple_choice `{"query", "choices", "gold"}`: one prompt per choice (few-shot examples, then the query,
  the delimiter and the choice); the choice whose tokens get the lowest mean loss is the answer.
- schema `{"context_options", "continuation", "gold"}`: one prompt per context; the context after which the
  shared continuation gets the lowest mean loss is the answer.
- language_modeling `{"context", "continuation"}`: right when greedy decoding reproduces every continuation token.

Few-shot examples for item i are drawn from the other items with random.Random(1234 + i). A task's accuracy is
centered against its baseline, (acc - b) / (1 - b), and CORE is the mean centered accuracy over the tasks.
The bundle is downloaded once (`download_bundle`) into $NANOCHAT_BASE_DIR/eval_bundle/.
"""

import csv
import json
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
TASK_TYPES = ("multiple_choice", "schema", "language_modeling")


@dataclass(frozen=True)
class CoreTask:
    label: str
    data_path: Path
    num_fewshot: int
    task_type: str
    delimiter: str
    baseline: float  # random-guess accuracy as a fraction


class BundleError(RuntimeError):
    """The eval bundle is missing or malformed; the message says which file and what to do."""


def bundle_dir() -> Path:
    from nanochat.common import get_base_dir

    return Path(get_base_dir()) / "eval_bundle"


def load_bundle(directory: Path) -> list[CoreTask]:
    """The tasks of a bundle directory, in core.yaml's order, with their baselines."""
    import yaml

    config_path, meta_path = directory / "core.yaml", directory / "eval_meta_data.csv"
    if not config_path.is_file() or not meta_path.is_file():
        raise BundleError(f"no eval bundle in {directory} (core.yaml and eval_meta_data.csv); fetch it with: "
                          "python -m nanochat.scripts.base_eval --download")
    with open(meta_path, newline="", encoding="utf-8") as f:
        baselines = {row["Eval Task"]: float(row["Random baseline"]) / 100 for row in csv.DictReader(f)}
    tasks = []
    for entry in yaml.safe_load(config_path.read_text(encoding="utf-8"))["icl_tasks"]:
        fewshot = entry["num_fewshot"]
        task = CoreTask(label=entry["label"], data_path=directory / "eval_data" / entry["dataset_uri"],
                        num_fewshot=int(fewshot[0] if isinstance(fewshot, list) else fewshot),
                        task_type=entry["icl_task_type"], delimiter=entry.get("continuation_delimiter", " "),
                        baseline=baselines.get(entry["label"], 0.0))
        if task.task_type not in TASK_TYPES:
            raise BundleError(f"{config_path}: task {task.label} has unknown type {task.task_type!r}")
        tasks.append(task)
    return tasks


def download_bundle(url: str = BUNDLE_URL) -> Path:
    """Fetch the bundle zip with the project's resumable downloader and unpack it into bundle_dir()."""
    from nanochat import dataset

    target = bundle_dir()
    if (target / "core.yaml").is_file():
        return target
    archive = target.parent / "eval_bundle.zip"
    dataset.download_url(url, archive, validate=zipfile.is_zipfile)
    staging = target.parent / "eval_bundle.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(staging)  # extractall drops absolute paths and ".." from member names
    inner = next((p.parent for p in staging.rglob("core.yaml")), None)
    if inner is None:
        raise BundleError(f"{archive} has no core.yaml: not an eval bundle; delete it and download again")
    inner.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def read_items(task: CoreTask) -> list[dict]:
    with open(task.data_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------------------------
# prompts: each item becomes one token sequence per option, and the span of tokens that is scored


def render_texts(task: CoreTask, item: dict, fewshot: list[dict]) -> list[tuple[str, str]]:
    """(context, continuation) per option of `item`, the context led by the few-shot examples."""
    d = task.delimiter
    if task.task_type == "multiple_choice":
        shots = "".join(f"{ex['query']}{d}{ex['choices'][ex['gold']]}\n\n" for ex in fewshot)
        return [(shots + item["query"], d + choice) for choice in item["choices"]]
    if task.task_type == "schema":
        shots = "".join(f"{ex['context_options'][ex['gold']]}{d}{ex['continuation']}\n\n" for ex in fewshot)
        return [(shots + context, d + item["continuation"]) for context in item["context_options"]]
    shots = "".join(f"{ex['context'].strip()}{d}{ex['continuation']}\n\n" for ex in fewshot)
    return [(shots + item["context"].strip(), d + item["continuation"])]


def encode_option(tokenizer, context: str, continuation: str, max_len: int) -> tuple[list[int], int]:
    """<|bos|> context continuation as ids (cut from the left to max_len) and where the continuation starts."""
    context_ids = tokenizer.encode(context, prepend=tokenizer.get_bos_token_id())
    continuation_ids = tokenizer.encode(continuation)
    ids = context_ids + continuation_ids
    start = len(context_ids)
    if len(ids) > max_len:
        cut = len(ids) - max_len
        ids, start = ids[cut:], max(start - cut, 1)
    return ids, start


def fewshot_examples(items: list[dict], index: int, k: int) -> list[dict]:
    if k == 0:
        return []
    others = [i for i in range(len(items)) if i != index]
    return [items[i] for i in random.Random(1234 + index).sample(others, min(k, len(others)))]


# ---------------------------------------------------------------------------------------------------------------
# scoring


@torch.no_grad()
def score_item(model, tokenizer, task: CoreTask, items: list[dict], index: int, device, max_len: int) -> bool:
    """Whether the model gets item `index` right: all options in one padded forward pass."""
    options = [encode_option(tokenizer, c, x, max_len)
               for c, x in render_texts(task, items[index], fewshot_examples(items, index, task.num_fewshot))]
    width = max(len(ids) for ids, _ in options)
    pad = tokenizer.get_bos_token_id()
    batch = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in options], device=device)
    logits = model(batch).float()
    if task.task_type == "language_modeling":
        ids, start = options[0]
        predicted = logits[0, start - 1:len(ids) - 1].argmax(dim=-1)
        return bool((predicted == batch[0, start:len(ids)]).all())
    losses = []
    for row, (ids, start) in enumerate(options):
        token_losses = F.cross_entropy(logits[row, start - 1:len(ids) - 1], batch[row, start:len(ids)],
                                       reduction="none")
        losses.append(token_losses.mean().item())
    return losses.index(min(losses)) == items[index]["gold"]


def evaluate_task(model, tokenizer, task: CoreTask, device, max_per_task: int | None, max_len: int,
                  rank: int = 0, world_size: int = 1) -> tuple[int, int]:
    """(correct, total) on this rank's share of the task's first `max_per_task` items (shuffled, seed 1337)."""
    items = read_items(task)
    random.Random(1337).shuffle(items)
    if max_per_task is not None:
        items = items[:max_per_task]
    correct = sum(score_item(model, tokenizer, task, items, i, device, max_len)
                  for i in range(rank, len(items), world_size))
    return correct, len(range(rank, len(items), world_size))


def centered(accuracy: float, baseline: float) -> float:
    return (accuracy - baseline) / (1 - baseline)

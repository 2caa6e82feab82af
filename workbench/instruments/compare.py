"""`nanochat-workbench compare [FILE]`: train your model and the reference side by side, and fill STATUS.md.

    nanochat-workbench compare                       learner_gpt.py of the workspace here, 50 steps
    nanochat-workbench compare my-gpt/learner_gpt.py --steps 20 --json

Both models are built from the same config (depth 4 by default), the same seed and the same initialisation
RNG, and trained for the same steps on the same batches (the embedded corpus, or downloaded shards: --data) with
base_train's recipe (nanochat/training.py: AdamW + Muon from the model's own setup_optimizers, gradient
clipping, the warmdown schedule). Each runs in a process of its own (workbench/instruments/isolate.py), one
after the other so neither slows the other down. Reported per model: the training loss at every step, val bits
per byte, tokens per second (the first step, which pays for warm-up, left out), peak memory, parameters, and the
CORE metric when the DCLM eval bundle is present (a quick CORE: the first --core-items of each task).

The figures go into the learner-vs-reference table of the STATUS.md beside FILE (workbench/status/doc.py: rows
matched by their first cell, the learner's own rows and lines untouched); --no-status leaves it alone. Both loss
curves are kept in `.workbench/compare.json` beside FILE, where the TUI's Plot screen finds them.
"""

import json
import math
from pathlib import Path

from workbench.instruments.command import add_model_arguments, model_file, report_failure, run_instrument, usage_error
from workbench.instruments.isolate import JobKind, JobOutcome, note, todo_of

COMMAND = "compare"
DEFAULT_STEPS = 50
CORE_ITEMS = 16


def add_arguments(parser) -> None:
    from nanochat.common import positive_int
    parser.add_argument("file", nargs="?", default=None,
                        help="your GPT file (default: the workspace's learner_gpt.py in the current directory)")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS,
                        help=f"training steps for each model (default {DEFAULT_STEPS})")
    parser.add_argument("--batch", type=positive_int, default=1, help="rows per step (default 1)")
    parser.add_argument("--seq", type=positive_int, default=512, help="tokens per row (default 512)")
    parser.add_argument("--eval-batches", type=positive_int, default=8,
                        help="validation batches for bits per byte (default 8)")
    parser.add_argument("--core-items", type=positive_int, default=CORE_ITEMS,
                        help=f"items per CORE task when the eval bundle is present (default {CORE_ITEMS})")
    parser.add_argument("--data", choices=("auto", "shards", "embedded"), default="auto",
                        help="training text (default auto: shards when downloaded, else the embedded corpus)")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                        help="where to train (default: cuda > mps > cpu)")
    parser.add_argument("--status", default=None, metavar="PATH",
                        help="the STATUS.md to fill (default: the one beside FILE)")
    parser.add_argument("--no-status", action="store_true", help="do not write STATUS.md")
    add_model_arguments(parser, timeout=1800.0, depth_help="blocks of both models (default 4)")


def run(args) -> int:
    if args.file is None:
        from workbench.course.workspace import learner_file_in
        args.file = str(learner_file_in(Path.cwd()))
    path, problem = model_file(args.file)
    if problem:
        return usage_error(COMMAND, problem)
    request = {"depth": args.depth, "steps": args.steps, "batch": args.batch, "seq": args.seq, "seed": args.seed,
               "eval_batches": args.eval_batches, "core_items": args.core_items, "data": args.data,
               "device": args.device}
    learner = run_instrument(__name__, {**request, "file": path}, args,
                             f"training your model for {args.steps} steps…")
    if learner.kind != JobKind.OK:
        return report_failure(COMMAND, learner, args.json)
    reference = run_instrument(__name__, {**request, "file": None}, args,
                               f"training the reference for {args.steps} steps…")
    if reference.kind != JobKind.OK:
        return report_failure(COMMAND, reference, args.json)
    save_results(Path(path).parent, learner.data, reference.data)
    status_note = None if args.no_status else fill_status(status_path(args, path), learner.data, reference.data)
    if args.json:
        print(json.dumps({"learner": learner.data, "reference": reference.data, "status": status_note}))
        return 0
    render(learner, reference, status_note)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# in the isolated child


def job(request: dict) -> dict:
    """Train one model `steps` steps; its losses and figures."""
    from nanochat.dataloader import tokenizing_distributed_data_loader_with_state
    from nanochat.tokenizer import get_tokenizer
    from workbench.instruments import device as devices
    from workbench.instruments.models import fresh_model

    device = devices.resolve(request)
    tokenizer = get_tokenizer()
    module, config, model = fresh_model(request, tokenizer.get_vocab_size(), request["seq"], device)
    optimizers = model.setup_optimizers()
    autocast = devices.autocast(device)
    loader = tokenizing_distributed_data_loader_with_state(request["batch"], request["seq"], "train", device=device,
                                                           source=request["data"])
    devices.reset_peak(device)
    losses, seconds = _train(model, optimizers, loader, request, autocast, device)
    tokens = request["batch"] * request["seq"]
    timed = seconds[1:] or seconds
    return {"loss": losses, "val_bpb": _val_bpb(model, request, autocast, device),
            "tok_per_s": tokens * len(timed) / sum(timed), "step_ms": 1000 * sum(timed) / len(timed),
            **dict(zip(("peak_memory_bytes", "peak_memory_kind"), devices.peak_memory(device))),
            "params": sum(p.numel() for p in model.parameters()), "core": _core(model, tokenizer, device, request),
            "device": device, "config": dict(vars(config)), "steps": request["steps"]}


def _train(model, optimizers, loader, request: dict, autocast, device: str) -> tuple[list, list]:
    """base_train's step, `steps` times: (loss per step, seconds per step). Stops early at a non-finite loss."""
    import time

    from nanochat.training import accumulate_gradients, lr_multiplier, muon_momentum, optimizer_step
    from workbench.instruments.device import synchronize
    steps, losses, seconds = request["steps"], [], []
    batch = next(loader)
    model.train()
    for step in range(steps):
        started = time.perf_counter()
        loss, _, batch = accumulate_gradients(model, loader, batch, 1, autocast)
        optimizer_step(model, optimizers, optimizers[-1], lr_multiplier(step, steps, 0.0, 0.2, 0.0),
                       muon_momentum(step), 1.0)
        losses.append(float(loss))
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        if not math.isfinite(losses[-1]):
            note(request, f"the loss became {losses[-1]} at step {step}: training stopped there")
            break
    return losses, seconds


def _val_bpb(model, request: dict, autocast, device: str) -> float:
    from nanochat.dataloader import tokenizing_distributed_data_loader
    from nanochat.loss_eval import evaluate_bpb
    from nanochat.tokenizer import get_token_bytes
    model.eval()
    val = tokenizing_distributed_data_loader(request["batch"], request["seq"], "val", device=device,
                                             source=request["data"])
    with autocast:
        return evaluate_bpb(model, val, request["eval_batches"], get_token_bytes(device=device))


def _core(model, tokenizer, device: str, request: dict) -> float | None:
    """A quick CORE (the first `core_items` of each task) when the eval bundle is present, else None."""
    import types

    import torch

    from nanochat.core_eval import BundleError, bundle_dir, load_bundle
    from nanochat.scripts.base_eval import run_core
    try:
        tasks = load_bundle(bundle_dir())
    except BundleError:
        return None
    try:
        results = run_core(model, tokenizer, tasks, types.SimpleNamespace(max_per_task=request["core_items"]),
                           False, 0, 1, torch.device(device))
    except NotImplementedError as e:  # CORE scores with the model's forward only; a TODO elsewhere is no reason
        if todo_of(e, request.get("file")) is None:
            raise
        note(request, "CORE was skipped: the model hit a TODO while scoring")
        return None
    return sum(r["centered"] for r in results.values()) / len(results)


# ---------------------------------------------------------------------------------------------------------------
# STATUS.md and rendering (in the caller)


def results_path(workspace: Path) -> Path:
    """Where the last comparison's figures are kept for the TUI's Plot screen."""
    return Path(workspace) / ".workbench" / "compare.json"


def save_results(workspace: Path, learner: dict, reference: dict) -> None:
    from nanochat.fsutil import atomic_write
    path = results_path(workspace)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"learner": learner, "reference": reference}))
    except OSError:
        pass  # the figures are printed and in STATUS.md; only the plot misses them


def load_results(workspace: Path) -> dict | None:
    """The last comparison saved in `workspace` ({"learner", "reference"}), or None."""
    try:
        data = json.loads(results_path(workspace).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"learner", "reference"} <= data.keys() else None


def status_path(args, learner_file: str) -> Path:
    return Path(args.status) if args.status else Path(learner_file).parent / "STATUS.md"


def table_rows(learner: dict, reference: dict) -> list[list[str]]:
    """The learner-vs-reference rows: (component, learner, reference, how the learner compares)."""
    steps = len(learner["loss"])
    rows = [["Training loss (compare)", f"{learner['loss'][-1]:.4f} at step {steps}",
             f"{reference['loss'][-1]:.4f} at step {len(reference['loss'])}",
             _relative(learner["loss"][-1], reference["loss"][-1])],
            ["Validation bpb (compare)", f"{learner['val_bpb']:.4f}", f"{reference['val_bpb']:.4f}",
             _relative(learner["val_bpb"], reference["val_bpb"])],
            ["Speed (compare)", f"{learner['tok_per_s']:,.0f} tok/s", f"{reference['tok_per_s']:,.0f} tok/s",
             f"{learner['tok_per_s'] / reference['tok_per_s']:.2f}× the reference"],
            ["Peak memory (compare)", _mib(learner["peak_memory_bytes"]), _mib(reference["peak_memory_bytes"]),
             f"{learner['peak_memory_bytes'] / reference['peak_memory_bytes']:.2f}× the reference"],
            ["Parameters", f"{learner['params']:,}", f"{reference['params']:,}",
             "same" if learner["params"] == reference["params"] else "differs"]]
    if learner.get("core") is not None and reference.get("core") is not None:
        rows.append(["CORE (compare)", f"{learner['core']:.4f}", f"{reference['core']:.4f}",
                     f"{learner['core'] - reference['core']:+.4f}"])
    return rows


def _relative(mine: float, theirs: float) -> str:
    if mine == theirs:
        return "same"
    if not (math.isfinite(mine) and math.isfinite(theirs)) or theirs == 0:
        return "differs"
    return f"{100 * (mine - theirs) / abs(theirs):+.2f}% vs the reference"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def fill_status(path: Path, learner: dict, reference: dict) -> str:
    """Upsert the rows into STATUS.md; what happened, in one line."""
    from workbench.status.doc import StatusDoc, StatusDocError
    if not path.is_file():
        return f"no {path}: the table was not written (nanochat-workbench init creates one)"
    try:
        doc = StatusDoc.load(path)
        doc.update_comparison_table(table_rows(learner, reference))
        doc.save()
    except (StatusDocError, OSError) as e:
        return f"{path} was not updated: {e}"
    return f"{path}: learner-vs-reference table updated"


def render(learner: JobOutcome, reference: JobOutcome, status_note: str | None) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(highlight=False)
    for who, outcome in (("your model", learner), ("the reference", reference)):
        for text in outcome.notes:
            console.print(f"[yellow]note ({who}):[/yellow] {text}")
    console.print(loss_table(learner.data, reference.data))
    table = Table(title="learner vs reference", title_justify="left")
    for col in ("", "learner", "reference", "learner compared"):
        table.add_column(col)
    for row in table_rows(learner.data, reference.data):
        table.add_row(*row)
    console.print(table)
    if status_note:
        console.print(f"[dim]{status_note}[/dim]")


def loss_table(learner: dict, reference: dict, rows: int = 12):
    """The loss at up to `rows` evenly spaced steps (always the first and the last)."""
    from rich.table import Table
    from rich.text import Text
    n = max(len(learner["loss"]), len(reference["loss"]))
    picks = sorted({round(i * (n - 1) / (rows - 1)) for i in range(rows)}) if n > rows else list(range(n))
    table = Table(title="training loss, same batches", title_justify="left")
    for col in ("step", "learner", "reference", "Δ"):
        table.add_column(col, justify="right")
    for i in picks:
        mine = learner["loss"][i] if i < len(learner["loss"]) else math.nan
        theirs = reference["loss"][i] if i < len(reference["loss"]) else math.nan
        delta = mine - theirs
        style = "green" if abs(delta) < 1e-3 else "yellow" if abs(delta) < 0.05 else "red"
        table.add_row(str(i + 1), f"{mine:.4f}", f"{theirs:.4f}", Text(f"{delta:+.4f}", style=style))
    return table


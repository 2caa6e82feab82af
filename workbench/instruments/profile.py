"""`nanochat-workbench profile [FILE]`: one training step of a small GPT, module by module.

    nanochat-workbench profile                       the reference, depth 4, 8 x 512 tokens
    nanochat-workbench profile learner_gpt.py --depth 6 --batch 4 --seq 256
    nanochat-workbench profile --json                {"step_ms", "modules": [{"name", "forward_ms", ...}], ...}

After `--warmup` untimed steps, one full step (forward, backward, optimizer) is timed: per module its forward and
backward time, its parameters, the activation memory it keeps for the backward pass and its FLOPs; for the step:
time per phase, tokens per second, peak memory, and the FLOPs measured against the model's own
`estimate_flops()` (per token, forward + backward).

Why hooks and not torch.profiler: the question is "which module costs what", and torch.profiler answers "which
operator costs what" — attributing its backward kernels to modules means matching autograd sequence numbers,
and its own per-operator bookkeeping inflates small CPU ops. Module hooks mark the module boundaries directly:
forward pre/post hooks bracket the forward; for the backward, a hook on the module's output tensor fires when
its gradient arrives (the module's backward starts) and hooks on its input tensors (or, for an embedding, on its
weight's accumulated gradient) fire when it is done. On the CPU every operator is synchronous, so a
`perf_counter()` at each hook is the module's time; on CUDA the hooks record CUDA events on the stream instead,
which time the kernels without a synchronisation per module (one at the end of the step). A hook costs
microseconds. Activation memory is counted with saved-tensor hooks (what autograd keeps for the backward,
parameters excluded), which works the same on CPU and GPU; FLOPs come from torch's FlopCounterMode, in a
separate untimed pass. The model runs in a process of its own (workbench/instruments/isolate.py).
"""

import time

from workbench.instruments.command import add_model_arguments, model_file, present, run_instrument, usage_error
from workbench.instruments.device import autocast, synchronize
from workbench.instruments.isolate import note, todo_of

COMMAND = "profile"


def add_arguments(parser) -> None:
    from nanochat.common import positive_int
    parser.add_argument("file", nargs="?", default=None, help="your GPT file (default: the reference nanochat/gpt.py)")
    parser.add_argument("--batch", type=positive_int, default=8, help="rows per step (default 8)")
    parser.add_argument("--seq", type=positive_int, default=512, help="tokens per row (default 512)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed one (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                        help="where to run (default: cuda > mps > cpu)")
    parser.add_argument("--all", action="store_true", help="list every module (the linears too)")
    add_model_arguments(parser, timeout=600.0, depth_help="blocks (default 4; n_embd = 64 x depth)")


def run(args) -> int:
    path, problem = model_file(args.file)
    if problem:
        return usage_error(COMMAND, problem)
    if args.warmup < 0:
        return usage_error(COMMAND, f"--warmup must be 0 or more, got {args.warmup}")
    request = {"file": path, "depth": args.depth, "batch": args.batch, "seq": args.seq, "warmup": args.warmup,
               "device": args.device, "seed": args.seed}
    outcome = run_instrument(__name__, request, args, f"profiling a depth-{args.depth} training step…")
    return present(COMMAND, outcome, args.json, lambda console, data: render(console, data, args.all))


# ---------------------------------------------------------------------------------------------------------------
# in the isolated child


def job(request: dict) -> dict:
    import torch

    from nanochat.tokenizer import get_tokenizer
    from workbench.instruments import device as devices
    from workbench.instruments.models import fresh_model

    device = devices.resolve(request)
    vocab = get_tokenizer().get_vocab_size()
    module, config, model = fresh_model(request, vocab, request["seq"], device)
    model.train()
    optimizers = model.setup_optimizers()
    gen = torch.Generator().manual_seed(request.get("seed", 0))
    x, y = (torch.randint(0, vocab, (request["batch"], request["seq"]), generator=gen).to(device) for _ in range(2))
    for _ in range(request["warmup"]):
        _train_step(model, optimizers, x, y, device)
    devices.reset_peak(device)
    timer = ModuleTimer(model, device)
    with timer:
        phases = _train_step(model, optimizers, x, y, device)
    flops, total_flops = _count_flops(model, x, y, device)
    rows = timer.rows(flops)
    tokens = x.numel()
    return {"step_ms": sum(phases.values()), **{f"{k}_ms": v for k, v in phases.items()},
            "tokens": tokens, "tok_per_s": tokens / (sum(phases.values()) / 1000),
            "device": device, "threads": torch.get_num_threads(), "config": dict(vars(config)),
            **dict(zip(("peak_memory_bytes", "peak_memory_kind"), devices.peak_memory(device))),
            "flops_per_token": total_flops / tokens, "estimate_flops": _estimate(model, request),
            "modules": rows}


def _train_step(model, optimizers, x, y, device: str) -> dict:
    """One step; {"forward", "backward", "optimizer"} in ms, the device synchronised at each boundary."""
    marks = [time.perf_counter()]
    with autocast(device):
        loss = model(x, y)
    synchronize(device)
    marks.append(time.perf_counter())
    loss.backward()
    synchronize(device)
    marks.append(time.perf_counter())
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)
    synchronize(device)
    marks.append(time.perf_counter())
    return {name: 1000 * (b - a) for name, a, b in zip(("forward", "backward", "optimizer"), marks, marks[1:])}


def _count_flops(model, x, y, device: str) -> tuple[dict, float]:
    """FLOPs of a forward + backward per module name (untimed; gradients cleared after)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        with autocast(device):
            loss = model(x, y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    per_module = {}
    for name, ops in counter.get_flop_counts().items():
        _, _, inner = name.partition(".")  # "GPT.transformer.h.0" -> "transformer.h.0"
        if inner:
            per_module[inner] = sum(ops.values())
    return per_module, float(counter.get_total_flops())


def _estimate(model, request: dict) -> float | None:
    try:
        return float(model.estimate_flops())
    except NotImplementedError as e:
        if todo_of(e, request.get("file")) is None:
            raise
        note(request, "GPT.estimate_flops is still a TODO: the measured FLOPs are shown without an estimate")
        return None


class ModuleTimer:
    """Hooks on every module for one step: forward and backward time stamps, saved activations (see the module
    docstring for why hooks). Stamps are perf_counter() on the CPU and recorded CUDA events on a GPU."""

    def __init__(self, model, device: str):
        self.model, self.cuda = model, device == "cuda"
        self.modules = {name: m for name, m in model.named_modules() if name}
        self.forward: dict[str, list] = {}  # name -> [(start, end), ...]
        self.backward_start: dict[str, object] = {}
        self.backward_end: dict[str, object] = {}
        self.saved: dict[str, int] = {}
        self.stack: list[str] = []
        self.seen: set[int] = set()
        self.params = {p.data_ptr() for p in model.parameters()}
        self.handles, self.saved_hooks = [], None

    def stamp(self):
        if self.cuda:
            import torch
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else 1000 * (b - a)

    def __enter__(self):
        import torch
        for name, module in self.modules.items():
            self.handles.append(module.register_forward_pre_hook(lambda m, args, n=name: self._pre(n, args)))
            self.handles.append(module.register_forward_hook(lambda m, args, out, n=name: self._post(n, out)))
            for p in module.parameters(recurse=False):
                if p.requires_grad:
                    self.handles.append(p.register_post_accumulate_grad_hook(lambda p, n=name: self._end(n)))
        self.saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self.saved_hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.saved_hooks.__exit__(*exc)
        for handle in self.handles:
            handle.remove()
        synchronize("cuda" if self.cuda else "cpu")
        return False

    def _pre(self, name: str, args) -> None:
        self.stack.append(name)
        self.forward.setdefault(name, []).append([self.stamp(), None])
        for a in args:
            if getattr(a, "requires_grad", False) and a.grad_fn is not None:
                a.register_hook(lambda g, n=name: self._end(n))

    def _post(self, name: str, out) -> None:
        self.forward[name][-1][1] = self.stamp()
        self.stack.pop()
        tensor = out[0] if isinstance(out, (tuple, list)) and out else out
        if getattr(tensor, "requires_grad", False):
            tensor.register_hook(lambda g, n=name: self._start(n))

    def _start(self, name: str) -> None:
        if name not in self.backward_start:
            self.backward_start[name] = self.stamp()

    def _end(self, name: str) -> None:
        self.backward_end[name] = self.stamp()  # the last one wins: the module's backward is done

    def _pack(self, t):
        key = t.data_ptr()
        if key not in self.params and key not in self.seen:
            self.seen.add(key)
            for name in self.stack:  # inclusive: a block counts what its attention and MLP keep
                self.saved[name] = self.saved.get(name, 0) + t.numel() * t.element_size()
        return t

    def rows(self, flops: dict) -> list[dict]:
        """One dict per module that ran, in model order."""
        out = []
        for name, module in self.modules.items():
            if name not in self.forward:
                continue  # containers (ModuleDict, ModuleList) are never called
            start, end = self.backward_start.get(name), self.backward_end.get(name)
            out.append({"name": name, "type": type(module).__name__, "depth": name.count("."),
                        "forward_ms": sum(self.elapsed_ms(a, b) for a, b in self.forward[name]),
                        "backward_ms": self.elapsed_ms(start, end) if start is not None and end is not None else None,
                        "params": sum(p.numel() for p in module.parameters()),
                        "saved_bytes": self.saved.get(name, 0), "flops": flops.get(name, 0)})
        return out


# ---------------------------------------------------------------------------------------------------------------
# rendering (in the caller)

BAR_WIDTH = 24


def render(console, data: dict, show_all: bool) -> None:
    from rich.rule import Rule
    cfg = data["config"]
    console.print(Rule(f"[bold]one training step: depth {cfg['n_layer']}, {data['tokens']:,} tokens "
                       f"({data['tokens'] // cfg['sequence_len']} x {cfg['sequence_len']}), {data['device']}"))
    console.print(module_table(data, show_all))
    console.print(summary(data))


def module_table(data: dict, show_all: bool):
    from rich.table import Table
    from rich.text import Text
    table = Table(title="per module: forward, backward, share of the step, activations saved for the backward",
                  title_justify="left")
    for col in ("module", "fwd ms", "bwd ms", "share of step", "params", "saved", "GFLOPs"):
        table.add_column(col, justify="left" if col in ("module", "share of step") else "right", no_wrap=True)
    step = data["step_ms"]
    for row in data["modules"]:
        if row["depth"] > 3 and not show_all:
            continue
        backward = row["backward_ms"] or 0.0
        share = (row["forward_ms"] + backward) / step if step else 0.0
        bar = Text("█" * round(share * BAR_WIDTH) or "▏", style="cyan" if row["depth"] <= 2 else "dim cyan")
        bar.append(f" {100 * share:.1f}%", style="")
        table.add_row(_short(row), f"{row['forward_ms']:.1f}",
                      f"{row['backward_ms']:.1f}" if row["backward_ms"] is not None else "-", bar,
                      f"{row['params']:,}", _mib(row["saved_bytes"]), f"{row['flops'] / 1e9:.2f}")
    return table


def _short(row: dict) -> str:
    """transformer.h.0.attn -> "    attn", indented by depth; a block reads "h.0"."""
    parts = row["name"].split(".")
    name = ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1] if row["depth"] > 1 else row["name"]
    return "  " * max(row["depth"] - 1, 0) + name


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def summary(data: dict) -> str:
    lines = [f"step {data['step_ms']:.0f} ms = forward {data['forward_ms']:.0f} + backward {data['backward_ms']:.0f} "
             f"+ optimizer {data['optimizer_ms']:.0f}; {data['tok_per_s']:,.0f} tok/s ({data['threads']} threads)",
             f"peak memory: {_mib(data['peak_memory_bytes'])} "
             f"({'allocated by torch' if data['peak_memory_kind'] == 'allocated' else 'resident, whole process'})"]
    measured, estimate = data["flops_per_token"], data["estimate_flops"]
    line = f"FLOPs per token (forward + backward), measured: {measured / 1e6:.2f}M"
    if estimate:
        line += f"; estimate_flops(): {estimate / 1e6:.2f}M (measured / estimate = {measured / estimate:.3f})"
    lines.append(line)
    lines.append(f"achieved: {measured * data['tok_per_s'] / 1e9:.1f} GFLOP/s")
    return "\n".join(lines)

"""`nanochat-workbench trace [FILE]`: look inside one forward pass of a small GPT, in colour, in the terminal.

It builds a depth-4 model from FILE (the reference `nanochat/gpt.py` when no file is given), initialises it,
then fills the matrices that init leaves at zero (lm_head and the output projections) with small random values,
because a model whose blocks add exactly nothing shows nothing. One batch of real text goes through with a
forward hook on every module and a wrapper around `norm` and `apply_rotary_emb`, and the trace prints:

- every module and function call in the order they ran: input and output shapes, mean, std, min, max and the
  number of non-finite values (the first module to produce one is marked);
- Q/K/V shapes and which query heads share which key/value head (MQA/GQA);
- the causal mask as the model really behaves: position i is marked as depending on token j if changing token
  j changes the logits at i; anything above the diagonal is a leak from the future;
- the parameter breakdown, and a scaling table from depth 4 to depth 20 (vocab 65 536) computed by building
  each model on the "meta" device and calling its own `estimate_flops`.

The learner's code runs in this process (it is a read-only look, unlike `check`), but every call into it is
guarded: a TODO or an exception ends the trace with one clear line, not a traceback wall.
"""

import argparse
import math
import os
import traceback
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from workbench.course.phases import LESSON_FOR, phase_of

SCALING_DEPTHS = (4, 6, 8, 10, 12, 16, 20)
SCALING_VOCAB = 65536
SCALING_SEQ = 2048
FALLBACK_VOCAB = 4096
MASK_T = 8


def add_arguments(parser) -> None:
    parser.add_argument("file", nargs="?", default=None,
                        help="your GPT file (default: the reference nanochat/gpt.py)")
    parser.add_argument("--depth", type=int, default=4, help="number of blocks (default 4; n_embd = 64 x depth)")
    parser.add_argument("--seq", type=int, default=32, help="tokens in the traced batch (default 32)")
    parser.add_argument("--kv-heads", type=int, default=None,
                        help="key/value heads (default: as many as query heads; 1 = multi-query attention)")
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary size (default: the embedded-corpus tokenizer's; random tokens when given)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and the batch (default 0)")
    parser.add_argument("--grad", action="store_true",
                        help="train a few steps instead: gradient norms and update/weight ratios per layer")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps for --grad (default 3, at most 50)")


def config_kwargs(depth: int, vocab_size: int, sequence_len: int, n_kv_head: int | None = None) -> dict:
    """GPTConfig fields for `depth` blocks, by the same rule base_train uses (n_embd 64 per layer, head dim ~128)."""
    from nanochat.scripts.base_train import model_config_kwargs
    kwargs = model_config_kwargs(depth, sequence_len, vocab_size)
    if n_kv_head is not None:
        kwargs["n_kv_head"] = n_kv_head
    return kwargs


FAILED = object()  # what _Tracer.guard returns when the call did not complete


class _Stop(Exception):
    """The trace cannot go on; the message has been printed."""


@dataclass
class _Row:
    depth: int
    name: str
    kind: str  # the module's class name, or "function"
    inputs: str = ""
    output: str = ""
    stats: tuple | None = None  # (mean, std, min, max, nonfinite count)
    first_nonfinite: bool = False


@dataclass
class _Recorder:
    """Forward hooks on every module + wrappers around the model file's functions, writing rows in call order."""
    rows: list[_Row] = field(default_factory=list)
    depth: int = 0
    open_rows: list[_Row] = field(default_factory=list)
    qkv: dict = field(default_factory=dict)  # first attention's c_q/c_k/c_v output shapes
    seen_nonfinite: bool = False

    def pre(self, name, kind, args):
        row = _Row(self.depth, name, kind, inputs=", ".join(_describe(a) for a in args))
        self.rows.append(row)
        self.open_rows.append(row)
        self.depth += 1

    def post(self, output):
        self.depth -= 1
        row = self.open_rows.pop()
        row.output = _describe(output)
        tensor = _first_tensor(output)
        if tensor is not None and tensor.is_floating_point():
            row.stats = _stats(tensor)
            if row.stats[4] and not self.seen_nonfinite:
                row.first_nonfinite = self.seen_nonfinite = True
        for key in ("c_q", "c_k", "c_v"):
            if row.name.endswith(f".attn.{key}") and key not in self.qkv and tensor is not None:
                self.qkv[key] = tuple(tensor.shape)


def _first_tensor(value):
    import torch
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _describe(value) -> str:
    import torch
    if isinstance(value, torch.Tensor):
        return "×".join(str(s) for s in value.shape) if value.ndim else "scalar"
    if isinstance(value, (tuple, list)):
        parts = [_describe(v) for v in value]
        if len(parts) > 1 and len(set(parts)) == 1:
            return f"({parts[0]})×{len(parts)}"  # e.g. the (cos, sin) pair
        return "(" + ", ".join(parts) + ")"
    if value is None:
        return "None"
    return type(value).__name__


def _stats(t) -> tuple:
    import torch
    t = t.detach().float()
    finite = torch.isfinite(t)
    bad = int((~finite).sum())
    vals = t[finite]
    if vals.numel() == 0:
        return (math.nan, math.nan, math.nan, math.nan, bad)
    std = float(vals.std()) if vals.numel() > 1 else 0.0
    return (float(vals.mean()), std, float(vals.min()), float(vals.max()), bad)


def _fmt(v: float, signed: bool = True) -> str:
    if math.isnan(v):
        return "nan"
    if v != 0 and (abs(v) >= 1000 or abs(v) < 1e-3):
        return f"{v:+.2e}" if signed else f"{v:.2e}"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _human(n: float) -> str:
    """Counts the way ML papers write them: 36.7M parameters, 11.2B tokens."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


class _Tracer:
    def __init__(self, console: Console, path: str | None):
        self.console = console
        self.path = os.path.abspath(path) if path else None
        self.failed = False

    def guard(self, what: str, fn, *args, fatal: bool = True, **kwargs):
        """Call into the model's code; a TODO or an error is printed as one line (and ends the trace if fatal)."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            self.report(what, e)
        if fatal:
            raise _Stop()
        return FAILED

    def report(self, what: str, exc: Exception) -> None:
        """One line for a TODO or an error in the model's code: what, where (file:line, qualname) and why."""
        self.failed = True
        if isinstance(exc, NotImplementedError):
            qualname = self._where(exc)[0] or what
            phase = phase_of(qualname)
            phase_note = f" (phase {phase})" if phase else ""
            self.console.print(f"[yellow]not implemented yet: [bold]{escape(qualname)}[/bold]{phase_note}: "
                               f"{escape(str(exc))}[/yellow]")
            if qualname in LESSON_FOR:
                self.console.print(f"[dim]  lesson: lessons/{LESSON_FOR[qualname]} § `{escape(qualname)}`[/dim]")
            return
        qualname, location, source = self._where(exc)
        self.console.print(f"[red]{escape(what)} failed in [bold]{escape(qualname or '?')}[/bold] at "
                           f"{escape(location)}: {type(exc).__name__}: {escape(str(exc))}[/red]")
        if source:
            self.console.print(f"    [dim]{escape(source)}[/dim]")

    def _where(self, exc: BaseException) -> tuple[str | None, str, str]:
        """(qualname, file:line, source line) of the deepest frame in the model file (nanochat/gpt.py if none)."""
        frames = [(f, lineno) for f, lineno in traceback.walk_tb(exc.__traceback__)]
        mine = [(f, n) for f, n in frames if self.path and os.path.abspath(f.f_code.co_filename) == self.path]
        if not mine and self.path is None:
            mine = [(f, n) for f, n in frames if f.f_code.co_filename.endswith(os.path.join("nanochat", "gpt.py"))]
        if not mine:
            return None, "?", ""
        frame, lineno = mine[-1]
        code = frame.f_code
        qualname = getattr(code, "co_qualname", code.co_name)
        summary = traceback.extract_tb(exc.__traceback__)
        source = next((s.line for s in reversed(summary) if s.lineno == lineno
                       and os.path.abspath(s.filename) == os.path.abspath(code.co_filename)), "")
        return qualname, f"{os.path.basename(code.co_filename)}:{lineno}", source or ""


def track_of(path: str):
    """The track of a file that is not a GPT file (learner_muon.py, ...), else None (read without importing it)."""
    from workbench.tracks.recognise import recognise
    try:
        found = recognise(path)
    except OSError:
        return None  # the import reports it
    return found.track if found.track_file is not None else None


PIPED_WIDTH = 160  # piped to a file or a pager: wide enough that no module or shape column is cut


def run(args) -> int:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PIPED_WIDTH)
    errors = Console(highlight=False, stderr=True)
    if args.file is not None and not os.path.isfile(args.file):
        errors.print(f"[red]error:[/red] {escape(args.file)} is not a file; pass the path of your GPT file "
                      f"(or nothing, to trace the reference)")
        return 2
    track = track_of(args.file) if args.file is not None else None
    if track is not None:
        errors.print(f"[red]error:[/red] {escape(os.path.basename(args.file))} is a file of the {track} track; trace "
                     f"runs your GPT file (learner_gpt.py), or the reference with no file")
        return 2
    for flag, value, lo, hi in (("--depth", args.depth, 1, 64), ("--seq", args.seq, 1, 4096),
                                ("--vocab", args.vocab, 2, 1 << 20), ("--steps", args.steps, 1, 50)):
        if value is not None and not lo <= value <= hi:
            errors.print(f"[red]error:[/red] {flag} must be between {lo} and {hi}, got {value}")
            return 2
    heads = config_kwargs(args.depth, 2, 1)["n_head"]
    if args.kv_heads is not None and not (1 <= args.kv_heads <= heads and heads % args.kv_heads == 0):
        divisors = [d for d in range(1, heads + 1) if heads % d == 0]
        errors.print(f"[red]error:[/red] --kv-heads must divide the {heads} query heads of a depth-{args.depth} "
                      f"model: one of {divisors}")
        return 2
    import torch
    threads = torch.get_num_threads()
    if args.depth <= 8:
        # a model this small does microsecond matmuls: one thread is fastest, and with other work on the machine
        # several threads waiting on each other can be a hundred times slower
        torch.set_num_threads(1)
    try:
        if args.grad:
            from workbench.course.grad_trace import trace_grad
            failed = trace_grad(console, args)
        else:
            failed = _trace(console, args)
    except _Stop:
        return 1
    finally:
        torch.set_num_threads(threads)
    return 1 if failed else 0


@dataclass
class Setup:
    """What both traces start from: the guard, the model's module, a batch of ids and the config's kwargs."""
    tracer: "_Tracer"
    module: object
    ids: object
    vocab_size: int
    kwargs: dict


def open_trace(console: Console, args, title: str, extra_tokens: int = 0) -> Setup:
    """Load FILE (or the reference), cut a batch of `args.seq + extra_tokens` tokens, print the header."""
    from nanochat.model_source import ModelSourceError, describe, load_model_module

    tracer = _Tracer(console, args.file)
    try:
        module = load_model_module(args.file or "reference")
    except ModelSourceError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise _Stop() from None
    ids, vocab_size, batch_note = _batch(argparse.Namespace(**{**vars(args), "seq": args.seq + extra_tokens}))
    kwargs = config_kwargs(args.depth, vocab_size, args.seq, args.kv_heads)
    console.print(Rule(f"[bold]{title}: {escape(describe(args.file or 'reference'))}"))
    console.print("config: " + ", ".join(f"{k}={v}" for k, v in kwargs.items()))
    console.print(f"batch: {batch_note}")
    return Setup(tracer, module, ids, vocab_size, kwargs)


def _trace(console: Console, args) -> bool:
    """Print the whole trace; True when some part of it could not run."""
    import torch

    setup = open_trace(console, args, "trace")
    tracer, module, ids, vocab_size, kwargs = setup.tracer, setup.module, setup.ids, setup.vocab_size, setup.kwargs
    config = tracer.guard("GPTConfig", module.GPTConfig, **kwargs)
    torch.manual_seed(args.seed)
    model = tracer.guard("building the model", module.GPT, config)
    _param_breakdown(console, model, module, kwargs, args.file is not None)

    if tracer.guard("init_weights", model.init_weights, fatal=False) is FAILED:
        console.print("[dim]  (the trace goes on with PyTorch's default initialisation)[/dim]")
    filled = _fill_zero_matrices(model, args.seed)
    if filled:
        console.print(f"[dim]zero at init, filled with N(0, 1/fan_in) so every path carries signal: "
                      f"{escape(', '.join(filled))}[/dim]")

    model.eval()
    recorder = _Recorder()
    error = None
    with torch.no_grad(), _hooked(model, module, recorder):
        try:
            logits = model(ids)
        except Exception as e:  # shown after the table of everything that did run
            error = e
    _module_table(console, recorder)
    if error is not None:
        tracer.report("the forward pass", error)
        raise _Stop()
    console.print(f"logits: {_describe(logits)}")
    _attention(console, config, recorder)
    with torch.no_grad():
        _causal_mask(console, tracer, model, ids, vocab_size)
    _scaling(console, tracer, module)
    return tracer.failed


def _batch(args):
    """(ids (1, T), vocab size, a description): real text through the tokenizer when there is one."""
    import torch
    gen = torch.Generator().manual_seed(args.seed)
    if args.vocab is not None:
        ids = torch.randint(0, args.vocab, (1, args.seq), generator=gen)
        return ids, args.vocab, f"1 × {args.seq} random token ids (vocab {args.vocab} from --vocab)"
    try:
        from nanochat.tokenizer import get_tokenizer
        tokenizer = get_tokenizer()
        try:
            from nanochat.embedded_corpus import split
            text = split("val")[0]
        except Exception:
            text = "A transformer reads the whole sequence at once, and each position looks back at the ones before it."
        tokens = tokenizer.encode(text, prepend=tokenizer.get_bos_token_id())
        while len(tokens) < args.seq:
            tokens = tokens + tokens
        tokens = tokens[:args.seq]
        preview = tokenizer.decode(tokens[1:13]).replace("\n", " ")
        vocab = tokenizer.get_vocab_size()
        return (torch.tensor([tokens], dtype=torch.long), vocab,
                f"1 × {args.seq} tokens of real text (vocab {vocab}): {preview!r}…")
    except Exception as e:  # the tokenizer is optional here: fall back to random ids
        ids = torch.randint(0, FALLBACK_VOCAB, (1, args.seq), generator=gen)
        return ids, FALLBACK_VOCAB, (f"1 × {args.seq} random token ids (vocab {FALLBACK_VOCAB}; "
                                     f"no tokenizer: {type(e).__name__}: {e})")


def _fill_zero_matrices(model, seed: int) -> list[str]:
    import torch
    gen = torch.Generator().manual_seed(seed + 1)
    filled = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and p.numel() and not p.detach().any():
                std = 1.0 / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=gen) * std)
                filled.append(name)
    # one name per pattern: transformer.h.0.attn.c_proj.weight, ... -> transformer.h.*.attn.c_proj.weight
    return sorted({".".join("*" if part.isdigit() else part for part in n.split(".")) for n in filled})


def _recording(fn, name: str, rec: _Recorder):
    def wrapper(*args, **kwargs):
        rec.pre(f"{name}()", "function", args)
        out = fn(*args, **kwargs)  # on an exception the row stays open, like a module's: "stopped here"
        rec.post(out)
        return out
    return wrapper


class _hooked:
    """Context manager: hooks on every module, wrappers around norm/apply_rotary_emb; all removed on exit."""

    def __init__(self, model, module, recorder: _Recorder):
        self.model, self.module, self.recorder = model, module, recorder
        self.handles, self.originals = [], {}

    def __enter__(self):
        rec = self.recorder
        for name, mod in self.model.named_modules():
            label = name or type(mod).__name__
            kind = type(mod).__name__
            self.handles.append(mod.register_forward_pre_hook(
                lambda m, args, label=label, kind=kind: rec.pre(label, kind, args)))
            self.handles.append(mod.register_forward_hook(lambda m, args, out: rec.post(out)))
        for fname in ("norm", "apply_rotary_emb"):
            fn = getattr(self.module, fname, None)
            if callable(fn):
                self.originals[fname] = fn
                setattr(self.module, fname, _recording(fn, fname, rec))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        for fname, fn in self.originals.items():
            setattr(self.module, fname, fn)
        return False


def _module_table(console: Console, rec: _Recorder) -> None:
    if not rec.rows:
        return
    failed_at = rec.open_rows[-1] if rec.open_rows else None  # the innermost call that never returned
    console.print(Rule("forward pass, in call order" + (" (up to where it stopped)" if failed_at else "")))
    table = Table()
    for col, kw in (("module", {}), ("type", {"style": "cyan"}), ("input", {}), ("output", {"style": "bold"}),
                    ("mean", {"justify": "right"}), ("std", {"justify": "right"}), ("min", {"justify": "right"}),
                    ("max", {"justify": "right"}), ("non-finite", {"justify": "right"})):
        table.add_column(col, **kw)
    for row in rec.rows:
        short = row.name if row.depth == 0 else row.name.split(".")[-1] if row.kind != "function" else row.name
        if row.kind != "function" and row.name.split(".")[-1].isdigit():
            short = ".".join(row.name.split(".")[-2:])  # h.0 reads better than 0
        name = Text("  " * row.depth + short, style="magenta" if row.kind == "function" else "")
        if row.stats is None:
            cells = ["", "", "", "", ""]
        else:
            mean, std, lo, hi, bad = row.stats
            cells = [_fmt(mean), _fmt(std, signed=False), _fmt(lo), _fmt(hi),
                     Text(str(bad), style="bold red" if bad else "green")]
        if row.first_nonfinite:
            name.append("  ← first non-finite", style="bold red")
        if row is failed_at:
            name.append("  ← stopped here", style="bold red")
        table.add_row(name, row.kind, row.inputs, row.output or "-", *cells)
    console.print(table)


def _attention(console: Console, config, rec: _Recorder) -> None:
    n_head, n_kv = config.n_head, config.n_kv_head
    head_dim = config.n_embd // n_head
    console.print(Rule("attention: queries, keys, values"))
    if rec.qkv:
        for key, role, heads in (("c_q", "q", n_head), ("c_k", "k", n_kv), ("c_v", "v", n_kv)):
            shape = rec.qkv.get(key)
            if shape is None:
                continue
            b, t = shape[0], shape[1]
            console.print(f"  {role} = {key}(x): {'×'.join(map(str, shape))} → view {b}×{t}×{heads}×{head_dim} "
                          f"(B, T, heads, head_dim) → transpose {b}×{heads}×{t}×{head_dim}")
    else:
        console.print("  [dim](no c_q/c_k/c_v calls were seen in the first block)[/dim]")
    group = n_head // n_kv if n_kv else 0
    kind = ("multi-head attention: every query head has its own key/value head" if n_kv == n_head else
            "multi-query attention (MQA): one key/value head for all query heads" if n_kv == 1 else
            f"grouped-query attention (GQA): {group} query heads per key/value head")
    console.print(f"  {kind}")
    table = Table()
    table.add_column("kv head", justify="right")
    table.add_column("query heads that read it")
    for j in range(n_kv):
        table.add_row(str(j), ", ".join(str(i) for i in range(j * group, (j + 1) * group)))
    console.print(table)
    per_token = 2 * config.n_layer * n_kv * head_dim
    line = (f"  KV cache: {per_token:,} numbers per token (k and v × {config.n_layer} layers × {n_kv} kv heads × "
            f"{head_dim})")
    if n_kv != n_head:
        full = 2 * config.n_layer * n_head * head_dim
        line += f"; {n_head // n_kv}× less than the {full:,} of one kv head per query head"
    console.print(line)


def _causal_mask(console: Console, tracer: _Tracer, model, ids, vocab_size: int) -> None:
    """Measure, don't assume: which input tokens change the logits at each position."""
    t = min(MASK_T, ids.shape[1])
    base_ids = ids[:, :t]
    base = tracer.guard("the forward pass", model, base_ids, fatal=False)
    if base is FAILED:
        return
    depends = [[False] * t for _ in range(t)]
    for j in range(t):
        changed = base_ids.clone()
        changed[0, j] = (changed[0, j] + 1) % vocab_size
        out = tracer.guard("the forward pass", model, changed, fatal=False)
        if out is FAILED:
            return
        diff = (out.float() - base.float()).abs().amax(dim=-1)[0]  # (t,)
        tol = 1e-6 * (1.0 + float(base.float().abs().max()))
        for i in range(t):
            depends[i][j] = bool(diff[i] > tol)
    leaks = sum(depends[i][j] for i in range(t) for j in range(i + 1, t))
    table = Table(show_header=True, box=None, padding=(0, 1))
    table.add_column("i \\ j", justify="right", style="dim")
    for j in range(t):
        table.add_column(str(j), justify="center")
    for i in range(t):
        cells = []
        for j in range(t):
            if depends[i][j]:
                cells.append(Text("■", style="green") if j <= i else Text("■", style="bold red"))
            else:
                cells.append(Text("·", style="dim") if j > i else Text("○", style="yellow"))
        table.add_row(str(i), *cells)
    console.print(Rule("causal mask"))
    console.print(f"measured on the first {t} tokens: does the output at position i (row) change when token j "
                  f"(column) changes?")
    console.print(table)
    if leaks:
        console.print(f"[bold red]  {leaks} future dependencies (red): a position sees tokens after it — the "
                      f"causal mask is missing or wrong[/bold red]")
    else:
        console.print("  [green]■[/green] depends (j ≤ i)   [dim]·[/dim] masked future   "
                      "[yellow]○[/yellow] allowed but no effect   — no position sees the future")


def _param_breakdown(console: Console, model, module, kwargs: dict, compare: bool) -> None:
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if name.startswith("transformer.wte."):
            key = "token embedding (wte)"
        elif name.startswith("lm_head."):
            key = "lm_head"
        elif name.startswith("transformer.h.") and len(parts) > 3:
            key = f"block {parts[2]} {'attention' if parts[3] == 'attn' else 'MLP' if parts[3] == 'mlp' else parts[3]}"
        else:
            key = "other: " + ".".join(parts[:-1])
        groups[key] = groups.get(key, 0) + p.numel()
    total = sum(groups.values())
    console.print(Rule("parameters"))
    table = Table()
    table.add_column("part")
    table.add_column("parameters", justify="right")
    table.add_column("share", justify="right")
    for key, n in groups.items():
        table.add_row(key, f"{n:,}", f"{100 * n / total:.1f}%" if total else "-")
    embedding = groups.get("token embedding (wte)", 0)
    table.add_row(Text("total", style="bold"), Text(f"{total:,}", style="bold"), "100%")
    share = f"{100 * (total - embedding) / total:.1f}%" if total else "-"
    table.add_row("non-embedding", f"{total - embedding:,}", share)
    if compare:
        ref_total = _meta_params("nanochat.gpt", kwargs)
        ok = ref_total == total
        verdict = Text("same" if ok else "differs", style="green" if ok else "red")
        table.add_row("reference total", f"{ref_total:,}", verdict)
    console.print(table)


def _meta_params(module_name: str, kwargs: dict) -> int:
    import importlib

    import torch
    ref = importlib.import_module(module_name)
    with torch.device("meta"):
        model = ref.GPT(ref.GPTConfig(**kwargs))
    return sum(p.numel() for p in model.parameters())


def _scaling(console: Console, tracer: _Tracer, module) -> None:
    import torch
    table = Table()
    for col in ("depth", "n_embd", "heads", "params", "non-embedding", "FLOPs/token", "tokens at 20/param",
                "training FLOPs"):
        table.add_column(col, justify="right")
    flops_missing = False
    for depth in SCALING_DEPTHS:
        kwargs = config_kwargs(depth, SCALING_VOCAB, SCALING_SEQ)
        with torch.device("meta"):
            model = tracer.guard(f"building a depth-{depth} model", module.GPT, module.GPTConfig(**kwargs),
                                 fatal=False)
        if model is FAILED:
            return
        params = sum(p.numel() for p in model.parameters())
        wte = getattr(getattr(getattr(model, "transformer", None), "wte", None), "weight", None)
        non_embedding = params - (wte.numel() if wte is not None else 0)
        flops = None
        if not flops_missing:
            flops = tracer.guard("estimate_flops", model.estimate_flops, fatal=False)
            flops_missing = flops is FAILED
            flops = None if flops_missing else flops
        tokens = 20 * params
        table.add_row(str(depth), str(kwargs["n_embd"]), str(kwargs["n_head"]), _human(params), _human(non_embedding),
                      f"{flops:.3g}" if flops is not None else "-", _human(tokens),
                      f"{flops * tokens:.2e}" if flops is not None else "-")
    console.print(Rule("scaling"))
    console.print(f"each depth built from this file's code on the meta device (no memory used), vocab "
                  f"{SCALING_VOCAB:,}, sequence {SCALING_SEQ}; FLOPs/token from its estimate_flops(); "
                  f"tokens at 20 per parameter (Chinchilla)")
    console.print(table)

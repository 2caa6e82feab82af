"""`nanochat-workbench attention`: where each attention head of a model looks, for one prompt.

    nanochat-workbench attention --file learner_gpt.py --prompt "the cat sat on the mat" --layer 1 --head 0
    nanochat-workbench attention --checkpoint base --model-tag d4 --step 100 --values
    nanochat-workbench attention --json          {"tokens", "layer", "head", "weights": T x T, ...}

Prints one head's T x T attention weights as a heatmap with the prompt's tokens on both axes (row i: how query
position i spreads its attention over the positions j <= i), and a grid of every layer x head saying what kind of
head it is: previous-token, first-token (the attention sink on <|bos|>), self, or other.

The weights are the model's own, not a re-implementation: while the model runs, every call of
`scaled_dot_product_attention` is recorded with the q, k, v it was given (after the model's rotary embedding and
QK-norm, whatever they are) and what it returned; softmax(q·kᵀ·scale + mask) is then computed from them in float64
and checked against that output (weights @ v must reproduce it: "reproduces_output" in the JSON). A model that
computes attention without that function gets its q, k, v recomputed from the block's own projections
(c_q/c_k/c_v outputs, then its file's `apply_rotary_emb` and `norm`, as the reference does), checked against the
input of its `c_proj`. MHA, GQA and MQA alike (key/value heads are shared by consecutive query heads).

The model runs in a process of its own (workbench/instruments/isolate.py): a fresh model from --file (the
reference by default; random weights, as after a check) or a checkpoint (--checkpoint). A model whose attention
does not run yet says which method is still a TODO.
"""

import math
from enum import Enum

from workbench.instruments.command import add_model_arguments, model_file, present, run_instrument, usage_error
from workbench.instruments.isolate import UsageError

COMMAND = "attention"
DEFAULT_PROMPT = "The cat sat on the mat. The cat sat on the"
MAX_TOKENS = 64
SEQ_LEN = 512  # the fresh model's sequence_len (as in the check)
KIND_THRESHOLD = 0.5  # a head is of a kind when at least this much of its attention goes there on average
PHASES = ("base", "mid", "sft", "rl")  # checkpoint_manager.PHASES, which can't be imported without torch
SDPA_OPTIONS = ("attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


class HeadKind(str, Enum):
    PREVIOUS = "previous-token"
    FIRST = "first-token"
    SELF = "self"
    OTHER = "other"


def add_arguments(parser) -> None:
    parser.add_argument("--file", default=None, help="your GPT file (default: the reference nanochat/gpt.py); with "
                                                     "--checkpoint: the model code to load its weights into")
    parser.add_argument("--checkpoint", "-i", "--phase", dest="checkpoint", choices=PHASES, default=None,
                        help="look at a trained checkpoint of this phase instead of a fresh model")
    parser.add_argument("--model-tag", "-g", dest="model_tag", default=None,
                        help="checkpoint tag (default: the deepest d<N>)")
    parser.add_argument("--step", "-s", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the text to look at (<|bos|> is put first)")
    parser.add_argument("--layer", type=int, default=0, help="the layer of the heatmap (default 0)")
    parser.add_argument("--head", type=int, default=0, help="the head of the heatmap (default 0)")
    parser.add_argument("--values", action="store_true", help="print the weights in the heatmap's cells")
    parser.add_argument("--kv-heads", type=int, default=None,
                        help="key/value heads of a fresh model (1 = multi-query attention; default: one per head)")
    add_model_arguments(parser, timeout=60.0, depth_help="blocks of a fresh model (default 4)")


def run(args) -> int:
    path, problem = model_file(args.file)
    if problem:
        return usage_error(COMMAND, problem)
    if not args.prompt.strip():
        return usage_error(COMMAND, "--prompt is empty")
    if args.checkpoint is None and (args.model_tag is not None or args.step is not None):
        return usage_error(COMMAND, "--model-tag and --step choose a checkpoint: add --checkpoint base|mid|sft|rl")
    request = {"file": path, "checkpoint": args.checkpoint, "model_tag": args.model_tag, "step": args.step,
               "prompt": args.prompt, "layer": args.layer, "head": args.head, "depth": args.depth,
               "kv_heads": args.kv_heads, "seed": args.seed}
    outcome = run_instrument(__name__, request, args, "running the model on the prompt…")
    return present(COMMAND, outcome, args.json, lambda console, data: render(console, data, args.values))


# ---------------------------------------------------------------------------------------------------------------
# in the isolated child


def job(request: dict) -> dict:
    """Run the prompt through the model, recording attention; the chosen head's weights and every head's kind."""
    import torch

    from workbench.instruments.models import checkpoint_model, fresh_model
    if request.get("checkpoint"):
        module, config, model, tokenizer, where = checkpoint_model(request)
    else:
        from nanochat.model_source import describe
        from nanochat.tokenizer import get_tokenizer
        tokenizer = get_tokenizer()
        module, config, model = fresh_model(request, tokenizer.get_vocab_size(), SEQ_LEN)
        where = f"fresh depth-{config.n_layer} model (random weights), {describe(request.get('file') or 'reference')}"
    layer, head = request["layer"], request["head"]
    if not 0 <= layer < config.n_layer:
        raise UsageError(f"--layer {layer} does not exist: the model has layers 0..{config.n_layer - 1}")
    if not 0 <= head < config.n_head:
        raise UsageError(f"--head {head} does not exist: the model has heads 0..{config.n_head - 1}")
    ids = tokenizer.encode(request["prompt"], prepend=tokenizer.get_bos_token_id())[:MAX_TOKENS]
    model.eval()
    capture = AttentionCapture(model, module)
    with torch.no_grad(), capture:
        model(torch.tensor([ids], device=next(model.parameters()).device))
    maps, error, how = {}, 0.0, set()
    for i in range(config.n_layer):
        weights, err, source = capture.layer_weights(i)
        maps[i], error = weights, max(error, err)
        how.add(source)
    w = maps[layer][head]
    return {"tokens": [tokenizer.decode([t]) for t in ids], "layer": layer, "head": head,
            "weights": [[float(x) for x in row] for row in w],
            "n_layer": config.n_layer, "n_head": config.n_head, "n_kv_head": config.n_kv_head,
            "heads": [[classify(maps[i][h]) for h in range(config.n_head)] for i in range(config.n_layer)],
            "reproduces_output": error, "recorded_from": sorted(how), "model": where}


class AttentionCapture:
    """While active: each block's attention call to scaled_dot_product_attention (q, k, v, options, output),
    and the outputs of its c_q/c_k/c_v and the input of its c_proj, for the recomputation fallback."""

    def __init__(self, model, module):
        self.model, self.module = model, module
        self.current: int | None = None
        self.calls: dict[int, dict] = {}
        self.projections: dict[int, dict] = {}
        self.handles, self.original = [], None

    def __enter__(self):
        import torch.nn.functional as F
        self.original = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._sdpa
        if getattr(self.module, "scaled_dot_product_attention", None) is self.original:
            self.module.scaled_dot_product_attention = self._sdpa  # `from torch.nn.functional import ...`
        for i, block in enumerate(self.model.transformer.h):
            self._hook_layer(i, block.attn)
        return self

    def _hook_layer(self, i: int, attn) -> None:
        seen = self.projections.setdefault(i, {})
        self.handles.append(attn.register_forward_pre_hook(lambda m, a, i=i: setattr(self, "current", i)))
        self.handles.append(attn.register_forward_hook(lambda m, a, out: setattr(self, "current", None)))
        for name in ("c_q", "c_k", "c_v"):
            if hasattr(attn, name):
                self.handles.append(getattr(attn, name).register_forward_hook(
                    lambda m, a, out, name=name: seen.setdefault(name, out)))
        if hasattr(attn, "c_proj"):
            self.handles.append(attn.c_proj.register_forward_pre_hook(lambda m, a: seen.setdefault("y", a[0])))

    def _sdpa(self, q, k, v, *args, **kwargs):
        options = dict(zip(SDPA_OPTIONS, args), **kwargs)
        y = self.original(q, k, v, **options)
        if self.current is not None and self.current not in self.calls:
            self.calls[self.current] = dict(q=q, k=k, v=v, y=y, **options)
        return y

    def __exit__(self, *exc):
        import torch.nn.functional as F
        F.scaled_dot_product_attention = self.original
        if getattr(self.module, "scaled_dot_product_attention", None) is self._sdpa:
            self.module.scaled_dot_product_attention = self.original
        for handle in self.handles:
            handle.remove()
        return False

    def layer_weights(self, layer: int):
        """(weights (H, T, T) of batch row 0, max |weights @ v - output|, "sdpa" or "projections")."""
        call, source = self.calls.get(layer), "sdpa"
        if call is None:
            call, source = self._recomputed(layer), "projections"
        weights = attention_weights(call["q"], call["k"], attn_mask=call.get("attn_mask"),
                                    is_causal=bool(call.get("is_causal")), scale=call.get("scale"))
        v = expand_kv(call["v"].double(), weights.size(-3))
        error = float((weights @ v - call["y"].double()).abs().max())
        return weights[0], error, source

    def _recomputed(self, layer: int) -> dict:
        """q, k, v from the block's own projections, rotated and normalised by the model file's functions."""
        seen, config = self.projections.get(layer, {}), self.model.config
        if not all(name in seen for name in ("c_q", "c_k", "c_v", "y")):
            raise RuntimeError(f"layer {layer}'s attention ran neither scaled_dot_product_attention nor all of "
                               f"c_q, c_k, c_v and c_proj, so its weights can't be read")
        n_head, n_kv = config.n_head, config.n_kv_head
        head_dim = config.n_embd // n_head
        B, T, _ = seen["c_q"].shape
        q = seen["c_q"].view(B, T, n_head, head_dim)
        k = seen["c_k"].view(B, T, n_kv, head_dim)
        cos, sin = self.model.cos[:, :T], self.model.sin[:, :T]
        q, k = self.module.apply_rotary_emb(q, cos, sin), self.module.apply_rotary_emb(k, cos, sin)
        q, k = self.module.norm(q), self.module.norm(k)
        v = seen["c_v"].view(B, T, n_kv, head_dim)
        y = seen["y"].view(B, T, n_head, head_dim)
        return dict(q=q.transpose(1, 2), k=k.transpose(1, 2), v=v.transpose(1, 2), y=y.transpose(1, 2),
                    is_causal=True)


def expand_kv(t, n_head: int):
    """(B, n_kv, T, D) -> (B, n_head, T, D): query head h reads key/value head h // (n_head / n_kv)."""
    return t if t.size(-3) == n_head else t.repeat_interleave(n_head // t.size(-3), dim=-3)


def attention_weights(q, k, *, attn_mask=None, is_causal=False, scale=None):
    """softmax(q·kᵀ·scale + mask) in float64, exactly as scaled_dot_product_attention defines it."""
    import torch
    q, k = q.double(), expand_kv(k.double(), q.size(-3))
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else 1.0 / math.sqrt(q.size(-1)))
    t_q, t_k = scores.shape[-2:]
    if is_causal:
        allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.double()
    return scores.softmax(dim=-1)


def classify(weights) -> dict:
    """What a head mostly attends to, averaged over query positions 2.. (where first, previous and self differ)."""
    t = weights.size(0)
    rows = range(2, t) if t > 2 else range(t)
    n = max(len(rows), 1)
    scores = {HeadKind.PREVIOUS: sum(float(weights[i, max(i - 1, 0)]) for i in rows) / n,
              HeadKind.FIRST: sum(float(weights[i, 0]) for i in rows) / n,
              HeadKind.SELF: sum(float(weights[i, i]) for i in rows) / n}
    best = max(scores, key=scores.get)
    kind = best if scores[best] >= KIND_THRESHOLD else HeadKind.OTHER
    return {"kind": kind, "score": round(scores[best], 4), **{k.value: round(v, 4) for k, v in scores.items()}}


# ---------------------------------------------------------------------------------------------------------------
# rendering (in the caller)

SCALE = ((24, 28, 64), (150, 40, 130), (250, 215, 60))  # dark blue -> magenta -> yellow
KIND_STYLE = {HeadKind.PREVIOUS: "cyan", HeadKind.FIRST: "magenta", HeadKind.SELF: "green", HeadKind.OTHER: "dim"}


def colour(value: float, top: float) -> str:
    """The heatmap colour of `value` on a scale from 0 to `top`, as rich's "rgb(r,g,b)"."""
    x = min(max(value / top, 0.0), 1.0) if top > 0 else 0.0
    lo, hi = (SCALE[0], SCALE[1]) if x < 0.5 else (SCALE[1], SCALE[2])
    f = x * 2 if x < 0.5 else x * 2 - 1
    r, g, b = (round(a + (c - a) * f) for a, c in zip(lo, hi))
    return f"rgb({r},{g},{b})"


def token_label(token: str, width: int | None = None) -> str:
    label = token.replace("\n", "⏎").replace("\t", "⇥").replace(" ", "·")
    return label[:width] if width else label


def render(console, data: dict, values: bool) -> None:
    for part in renderables(data, values):
        console.print(part)


def renderables(data: dict, values: bool) -> list:
    """The heatmap of the chosen head, its colour scale, and the grid of every head (for a console or the TUI)."""
    from rich.rule import Rule
    top = max(max(row) for row in data["weights"])
    legend = " ".join(f"[on {colour(top * i / 8, top)}]  [/]" for i in range(9))
    return [Rule(f"[bold]attention: layer {data['layer']}, head {data['head']}"),
            f"[dim]{data['model']}; {_sharing(data)}; weights @ v reproduces the attention output to "
            f"{data['reproduces_output']:.1e} ({', '.join(data['recorded_from'])})[/dim]",
            heatmap(data, values),
            f"0 {legend} {top:.2f}    row i: where position i looks (columns j ≤ i; · is the masked future)",
            Rule("[bold]every head"), overview(data)]


def _sharing(data: dict) -> str:
    n_head, n_kv = data["n_head"], data["n_kv_head"]
    if n_kv == n_head:
        return f"{n_head} heads, multi-head attention"
    if n_kv == 1:
        return f"{n_head} query heads sharing 1 key/value head (MQA)"
    return f"{n_head} query heads, {n_kv} key/value heads (GQA, {n_head // n_kv} per group)"


def heatmap(data: dict, values: bool):
    from rich.table import Table
    from rich.text import Text
    width = 4 if values else 2
    weights, tokens = data["weights"], data["tokens"]
    top = max(max(row) for row in weights)
    table = Table(box=None, padding=(0, 0), show_edge=False, pad_edge=False)
    table.add_column("query \\ key", no_wrap=True)
    for j, token in enumerate(tokens):
        table.add_column(Text(token_label(token, 3 * width), style="bold"), width=width, overflow="fold",
                         justify="center")
    for i, row in enumerate(weights):
        cells = []
        for j, w in enumerate(row):
            if j > i:
                cells.append(Text("·".center(width), style="dim"))
            else:
                text = f"{w:.2f}"[1:].rjust(width) if values and w < 1 else ("1.0 " if values else " " * width)
                cells.append(Text(text, style=f"{'black' if w > top / 2 else 'white'} on {colour(w, top)}"))
        table.add_row(Text(f"{i:>2} {token_label(tokens[i], 12):<12} "), *cells)
    return table


def overview(data: dict):
    from rich.table import Table
    from rich.text import Text
    table = Table(title="what each head mostly attends to (mean weight over positions 2..T)", title_justify="left")
    table.add_column("layer", justify="right")
    for h in range(data["n_head"]):
        table.add_column(f"head {h}")
    for layer, heads in enumerate(data["heads"]):
        cells = []
        for h, head in enumerate(heads):
            kind = HeadKind(head["kind"])
            chosen = layer == data["layer"] and h == data["head"]
            cells.append(Text(f"{kind.value} {head['score']:.2f}" + (" ◀" if chosen else ""), style=KIND_STYLE[kind]))
        table.add_row(str(layer), *cells)
    return table

"""The hint ladder for each method: shapes, then the formula, then an outline, then the reference's code.
Track files (learner_muon.py, ...) climb the same four rungs from their spec and reference module (track_hint).

Each rung gives away a little more. The shapes come from the skeleton's own docstring (its In/Out lines) with
the sizes of the depth-4 model the checks use; the formulas are written here, one per method; the outline is
the reference method with its code hidden (workbench/course/methods.py); the code is the reference's method.
"""

import ast
import re

from workbench.course.methods import reference_method, reference_outline
from workbench.course.workspace import SKELETON_TEMPLATE
from workbench.tracks.base import TrackFile

RUNGS = ("shapes", "formula", "outline", "reference code")

DEPTH4 = "At the check's depth 4: B = 1, T = 512, C = n_embd = 256, H = n_head = 2, Hkv = n_kv_head = 2, " \
         "D = head_dim = 128, V = vocab_size = 4096, n_layer = 4."

FORMULAS: dict[str, str] = {
    "GPT.__init__":
        "head_dim D = n_embd // n_head\n"
        "wte: V×C table · h: n_layer blocks · lm_head: C→V (its own weights, not wte's)\n"
        "rotary_seq_len = 10 · sequence_len;  cos, sin = _precompute_rotary_embeddings(rotary_seq_len, D)",
    "GPT._precompute_rotary_embeddings":
        "for pair j = 0 … D/2−1:   ω_j = base^(−2j / D)\n"
        "for position t:           θ(t, j) = t · ω_j\n"
        "cos = cos θ, sin = sin θ, each shaped (1, seq_len, 1, D/2)",
    "Block.__init__":
        "attn = CausalSelfAttention(config, layer_idx)\nmlp = MLP(config)",
    "CausalSelfAttention.__init__":
        "D = C / H   (C must be divisible by H; H must be a multiple of Hkv)\n"
        "W_q: C → H·D    W_k, W_v: C → Hkv·D    W_o (c_proj): C → C    (no biases)",
    "MLP.__init__":
        "W_fc: C → 4C    W_proj: 4C → C    (no biases)",
    "GPT.init_weights":
        "every Linear / Embedding ← _init_weights\n"
        "lm_head.weight ← 0;  for every block: attn.c_proj.weight ← 0, mlp.c_proj.weight ← 0\n"
        "cos, sin ← _precompute_rotary_embeddings(rotary_seq_len, D) again",
    "GPT._init_weights":
        "Linear (out × in):  W ~ N(0, σ²),  σ = 1/√in · min(1, √(out/in))\n"
        "Embedding:          W ~ N(0, 1)",
    "norm":
        "y = x / √( mean(x², over the last dim) + ε )     (no learned scale, no mean subtraction)",
    "apply_rotary_emb":
        "x1 = x[..., :D/2],  x2 = x[..., D/2:]\n"
        "y1 =  x1·cos θ + x2·sin θ\n"
        "y2 = −x1·sin θ + x2·cos θ\n"
        "y  = concat(y1, y2) along the last dim, in x's dtype",
    "CausalSelfAttention.forward":
        "q = x W_q,  k = x W_k,  v = x W_v          (split into heads of size D)\n"
        "q, k ← norm(rotary(q)), norm(rotary(k))     (QK-norm after rotary)\n"
        "A = softmax(q kᵀ / √D + mask) ,  y = A v   (each query head uses key/value head h·Hkv/H)\n"
        "out = merge_heads(y) W_o\n"
        "mask: causal without a cache or on prefill; none for one new token; prefix + causal for a chunk",
    "MLP.forward":
        "h = x W_fc;   h = relu(h)²;   out = h W_proj",
    "Block.forward":
        "x = x + attn(norm(x))\nx = x + mlp(norm(x))",
    "GPT.forward":
        "T0 = cache position (0 without a cache);  cos, sin = tables[T0 : T0+T]\n"
        "x = norm(wte[idx]);  x = block(x) for each block;  x = norm(x)\n"
        "logits = 15 · tanh( (x W_lm) / 15 )\n"
        "loss = cross_entropy(logits.float() over (B·T, V), targets, ignore_index = −1)",
    "GPT.setup_optimizers":
        "s = (C / 768)^(−1/2)\n"
        "AdamW(β = (0.8, 0.95), ε = 1e−10): [lm_head @ unembedding_lr·s, wte @ embedding_lr·s]\n"
        "Muon(momentum 0.95): every parameter in the blocks @ matrix_lr\n"
        "every group: initial_lr = lr",
    "GPT.get_device":
        "device = transformer.wte.weight.device",
    "GPT.estimate_flops":
        "N = all parameters − wte parameters\n"
        "flops/token = 6·N + 12 · n_layer · H · D · sequence_len",
    "GPT.generate":
        "repeat max_tokens times:\n"
        "  logits = forward(ids)[:, −1]\n"
        "  top-k: logits below the k-th largest ← −∞\n"
        "  temperature > 0: next ~ softmax(logits / temperature) (seeded generator);  = 0: argmax\n"
        "  ids ← ids + [next];  yield next",
}


def _docstring(qualname: str) -> str:
    tree = ast.parse(SKELETON_TEMPLATE.read_text(encoding="utf-8"))
    body, node = tree.body, None
    for part in qualname.split("."):
        node = next((n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part), None)
        if node is None:
            return ""
        body = node.body
    return ast.get_docstring(node) or ""


def shapes_hint(qualname: str) -> str:
    """The In/Out (and attribute) lines of the skeleton's docstring, plus the depth-4 sizes."""
    doc = _docstring(qualname)
    keep, taking = [], False
    for line in doc.splitlines():
        if re.match(r"^(In|Out|Attributes?)\b", line.strip()):
            taking = True
        elif taking and not line.startswith((" ", "\t")):
            taking = False
        if taking:
            keep.append(line)
    text = "\n".join(keep) if keep else (doc.split("\n\n")[0] if doc else "(no shape notes for this method)")
    return f"{text}\n\n{DEPTH4}"


def hint(qualname: str, rung: int, track_file: TrackFile | None = None) -> str:
    """The text of one rung (0 shapes, 1 formula, 2 outline, 3 reference code) for a GPT method, or for one
    exercise of `track_file` (its reference module's code; the exercise's notes and TODO as the first rungs)."""
    if track_file is not None:
        return track_hint(track_file, qualname, rung)
    if rung == 0:
        return shapes_hint(qualname)
    if rung == 1:
        return FORMULAS.get(qualname, "(no formula for this one: it is plumbing, see the outline)")
    if rung == 2:
        return reference_outline(qualname)
    return reference_method(qualname)


def track_hint(track_file: TrackFile, qualname: str, rung: int) -> str:
    """A track exercise's rungs: what goes in and out (the skeleton docstring's notes, else the reference's
    summary line), what to compute (the skeleton's TODO), then the reference module's outline and code."""
    exercise = track_file.exercise(qualname)
    reference = track_file.reference_path()
    if rung == 0:
        if exercise.notes:
            return exercise.notes
        node = _find_def(reference, qualname)
        summary = (ast.get_docstring(node) if node is not None else "") or ""
        return summary.split("\n\n")[0] or "(no notes for this one: see the outline)"
    if rung == 1:
        return exercise.todo or "(no formula for this one: it is plumbing, see the outline)"
    if rung == 2:
        return reference_outline(qualname, reference)
    return reference_method(qualname, reference)


def _find_def(path, qualname: str):
    from workbench.tracks.skeleton import find_def
    return find_def(ast.parse(path.read_text(encoding="utf-8")), qualname)

"""Common mistakes, re-done on purpose with reference parts, so a mismatch can say what the learner probably did.

When a component's output differs from the reference, the judge compares it with each variant below (the
same inputs and weights, one deliberate change). If one matches, the report names it: "looks like relu
instead of relu²" is worth more to a learner than a bare max |Δ|. Each function yields
(description, output); descriptions finish the sentence "your code ...". Runs in the worker, on reference
modules only.
"""

import math

import torch
import torch.nn.functional as F

from nanochat import gpt as ref


def _rms(x, dim=-1):
    return x / x.pow(2).mean(dim, keepdim=True).add(torch.finfo(x.dtype).eps).sqrt()


def norm_variants(x):
    yield "subtracts the mean before dividing (that is LayerNorm; RMSNorm only rescales)", F.layer_norm(x, (x.size(-1),))
    yield ("divides by the vector's length instead of its root-mean-square (the mean inside the square root "
           "is missing)"), x / x.norm(dim=-1, keepdim=True)
    yield "divides by the mean of the squares without taking the square root", x / x.pow(2).mean(-1, keepdim=True)
    yield "multiplies by the root-mean-square instead of dividing by it", x * x.pow(2).mean(-1, keepdim=True).sqrt()
    for dim in range(x.ndim - 1):
        yield f"normalises over dimension {dim} instead of the last one", _rms(x, dim)


def _rotate(x1, x2, cos, sin, sign):
    # sign -1 is the reference's direction: y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos
    return x1 * cos - sign * x2 * sin, sign * x1 * sin + x2 * cos


def rotary_variants(x, cos, sin):
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    yield "rotates by +θ; the reference rotates by −θ (flip the sign of the sin terms)", torch.cat(_rotate(x1, x2, cos, sin, +1), -1)
    even, odd = x[..., 0::2], x[..., 1::2]
    for sign, what in ((-1, ""), (+1, ", and by +θ instead of −θ")):
        y1, y2 = _rotate(even, odd, cos, sin, sign)
        yield (f"pairs neighbouring channels (2i, 2i+1); the reference pairs channel i with i + D/2{what}",
               torch.stack([y1, y2], -1).flatten(-2))
    yield "returns x without rotating it", x
    y1, y2 = _rotate(x1, x2, cos, sin, -1)
    yield "puts the rotated halves back in the wrong order", torch.cat([y2, y1], -1)


def _attention(attn, x, cos_sin, rotary="ref", qk_norm="after", causal=True, scale=None, rotate=("q", "k"),
               tiled_kv=False):
    B, T, C = x.size()
    q = attn.c_q(x).view(B, T, attn.n_head, attn.head_dim)
    k = attn.c_k(x).view(B, T, attn.n_kv_head, attn.head_dim)
    v = attn.c_v(x).view(B, T, attn.n_kv_head, attn.head_dim)
    cos, sin = cos_sin
    if qk_norm == "before":
        q, k = ref.norm(q), ref.norm(k)
    if rotary == "ref":
        q = ref.apply_rotary_emb(q, cos, sin) if "q" in rotate else q
        k = ref.apply_rotary_emb(k, cos, sin) if "k" in rotate else k
    elif rotary == "flipped":
        q, k = ref.apply_rotary_emb(q, cos, -sin), ref.apply_rotary_emb(k, cos, -sin)
    if qk_norm == "after":
        q, k = ref.norm(q), ref.norm(k)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if tiled_kv:  # query head h reads kv head h % n_kv_head instead of h // (n_head / n_kv_head)
        group = attn.n_head // attn.n_kv_head
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                       enable_gqa=attn.n_head != k.size(1))
    return attn.c_proj(y.transpose(1, 2).contiguous().view(B, T, -1))


def _heads(attn, x, cos_sin):
    """The reference's q, k, v after rotary and QK-norm, still (B, T, H, D)."""
    B, T, C = x.size()
    cos, sin = cos_sin
    q = attn.c_q(x).view(B, T, attn.n_head, attn.head_dim)
    k = attn.c_k(x).view(B, T, attn.n_kv_head, attn.head_dim)
    v = attn.c_v(x).view(B, T, attn.n_kv_head, attn.head_dim)
    q, k = ref.norm(ref.apply_rotary_emb(q, cos, sin)), ref.norm(ref.apply_rotary_emb(k, cos, sin))
    return q, k, v


def _by_hand(attn, x, cos_sin, softmax_dim=-1, diagonal=0):
    """Attention written out (scores, mask, softmax, weighted sum) with one deliberate change."""
    B, T, C = x.size()
    q, k, v = (t.transpose(1, 2) for t in _heads(attn, x, cos_sin))
    group = attn.n_head // attn.n_kv_head
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)
    allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(diagonal)
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=softmax_dim)
    return attn.c_proj((weights @ v).transpose(1, 2).contiguous().view(B, T, -1))


def _untransposed(attn, x, cos_sin, before=True, after=True):
    """Attention with the (B, T, H, D) <-> (B, H, T, D) transposes left out: `before` the attention, `after` it."""
    B, T, C = x.size()
    q, k, v = _heads(attn, x, cos_sin)
    if not before:
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = y if after else y.transpose(1, 2)
    return attn.c_proj(y.contiguous().view(B, T, -1))


def attention_mask_and_layout_variants(attn, x, cos_sin):
    yield ("takes the softmax over the queries (dim=-2) instead of over the keys (dim=-1): each row of attention "
           "weights must sum to 1 over the positions a query looks at"), _by_hand(attn, x, cos_sin, softmax_dim=-2)
    yield ("masks one position too late: each position also sees the next one (tril(diagonal=1) instead of "
           "tril())"), _by_hand(attn, x, cos_sin, diagonal=1)
    if attn.n_head == attn.n_kv_head:
        yield ("attends across the heads axis instead of the positions: q, k, v are still (B, T, H, D) at the "
               "attention; transpose them to (B, H, T, D) first (and y back afterwards)"), _untransposed(attn, x, cos_sin)
        yield ("attends across the heads axis instead of the positions: q, k, v are still (B, T, H, D) at the "
               "attention (the transpose to (B, H, T, D) is missing)"), _untransposed(attn, x, cos_sin, after=False)
    yield ("merges the heads without transposing y back: y is (B, H, T, D) and must become (B, T, H, D) before "
           ".view(B, T, C), or heads and positions get mixed"), _untransposed(attn, x, cos_sin, before=False)


def attention_variants(attn, x, cos_sin):
    yield "does not normalise queries and keys (QK-norm after the rotary embedding is missing)", _attention(attn, x, cos_sin, qk_norm=None)
    yield "normalises queries and keys before the rotary embedding; the reference rotates first", _attention(attn, x, cos_sin, qk_norm="before")
    yield "does not apply the rotary embedding to queries and keys", _attention(attn, x, cos_sin, rotary=None)
    yield "rotates queries and keys by +θ instead of −θ", _attention(attn, x, cos_sin, rotary="flipped")
    yield "rotates only the queries, not the keys", _attention(attn, x, cos_sin, rotate=("q",))
    yield "rotates only the keys, not the queries", _attention(attn, x, cos_sin, rotate=("k",))
    yield "is not causal: each position also attends to later ones", _attention(attn, x, cos_sin, causal=False)
    yield "does not scale the scores by 1/sqrt(head_dim)", _attention(attn, x, cos_sin, scale=1.0)
    if 1 < attn.n_kv_head < attn.n_head:
        yield ("shares key/value heads in the wrong order: query head h should use kv head h // (n_head / "
               "n_kv_head), as repeat_interleave does, not h % n_kv_head as repeat does"), _attention(attn, x, cos_sin, tiled_kv=True)
    yield from attention_mask_and_layout_variants(attn, x, cos_sin)


def mlp_variants(mlp, x):
    h = mlp.c_fc(x)
    yield "uses relu instead of relu² (the reference squares after the relu)", mlp.c_proj(F.relu(h))
    yield "uses gelu instead of relu²", mlp.c_proj(F.gelu(h))
    yield "squares without the relu first", mlp.c_proj(h.square())
    yield "has no activation between c_fc and c_proj", mlp.c_proj(h)


def block_variants(block, x, cos_sin):
    attn = lambda h: block.attn(h, cos_sin, None)  # noqa: E731
    mlp, norm = block.mlp, ref.norm
    x1 = attn(norm(x))
    yield "has no residual connection around the attention (x = attn(...) instead of x = x + attn(...))", x1 + mlp(norm(x1))
    x1 = x + attn(norm(x))
    yield "has no residual connection around the MLP (x = mlp(...) instead of x = x + mlp(...))", mlp(norm(x1))
    a = attn(norm(x))
    yield "has no residual connections at all", mlp(norm(a))
    x1 = x + attn(x)
    yield "does not normalise the input of the attention (norm(x) is missing)", x1 + mlp(norm(x1))
    x1 = x + attn(norm(x))
    yield "does not normalise the input of the MLP (norm(x) is missing)", x1 + mlp(x1)
    x1 = norm(x + attn(x))
    yield "normalises after the residual add (post-norm); the reference normalises each sublayer's input (pre-norm)", norm(x1 + mlp(x1))
    yield "runs attention and MLP side by side on the same input instead of one after the other", x + attn(norm(x)) + mlp(norm(x))
    x1 = x + mlp(norm(x))
    yield "runs the MLP before the attention", x1 + attn(norm(x1))


def gpt_logits(model, idx, embed_norm=True, final_norm=True, softcap="ref"):
    T = idx.size(1)
    cos_sin = model.cos[:, :T], model.sin[:, :T]
    x = model.transformer.wte(idx)
    if embed_norm:
        x = ref.norm(x)
    for block in model.transformer.h:
        x = block(x, cos_sin, None)
    if final_norm:
        x = ref.norm(x)
    logits = model.lm_head(x)
    if softcap == "ref":
        return 15 * torch.tanh(logits / 15)
    if softcap == "unscaled":
        return torch.tanh(logits)
    return logits


def gpt_forward_variants(model, idx):
    yield "does not softcap the logits (the reference uses 15·tanh(logits / 15))", gpt_logits(model, idx, softcap=None)
    yield "softcaps with tanh(logits) instead of 15·tanh(logits / 15)", gpt_logits(model, idx, softcap="unscaled")
    yield "does not normalise the token embeddings (norm right after wte is missing)", gpt_logits(model, idx, embed_norm=False)
    yield "does not normalise before lm_head (the final norm is missing)", gpt_logits(model, idx, final_norm=False)


def loss_variants(logits, idx, targets):
    """The mean loss computed wrong, from the reference's logits for `idx` (B, T, V) and the batch's targets."""
    def ce(lg, tg, reduction="mean"):
        return F.cross_entropy(lg.float().reshape(-1, lg.size(-1)), tg.reshape(-1), ignore_index=-1,
                               reduction=reduction)
    yield ("shifts the targets again (logits[:, :-1] against targets[:, 1:]): the targets the loader gives are "
           "already the next tokens, shifted once"), ce(logits[:, :-1], targets[:, 1:])
    yield "compares the logits with the inputs idx instead of the targets", ce(logits, idx)
    yield "sums the per-token losses instead of averaging them", ce(logits, targets, "sum")


def flops_variants(model):
    nparams = sum(p.numel() for p in model.parameters())
    nembd = model.transformer.wte.weight.numel()
    c = model.config
    attn = 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * c.sequence_len
    yield "counts the embedding parameters too (the reference leaves the lookup table out)", 6 * nparams + attn
    yield "leaves out the attention term 12·n_layer·n_head·head_dim·sequence_len", 6 * (nparams - nembd)
    yield "uses 2 FLOPs per parameter (forward only); training takes 6 (forward + backward)", 2 * (nparams - nembd) + attn / 3
    yield "uses 2 FLOPs per parameter (forward only) and no attention term", 2 * (nparams - nembd)
    yield "leaves out lm_head as well as the embedding", 6 * (nparams - nembd - model.lm_head.weight.numel()) + attn

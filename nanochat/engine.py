"""Fast inference: a KV cache, token sampling, and the Engine that streams completions with calculator tool use.

Without a cache, producing token t+1 reruns the model over all t tokens before it (that is what
`GPT.generate` does, on purpose, as the simple version). With a cache, each layer keeps the keys and values
it already computed, so a decode step feeds just the newest token and attends to the cached rest.

The Engine works with any model that keeps the GPT contract of nanochat/gpt.py (the reference or a learner's
file): it reads `model.config` (`n_layer`, `n_head`, `n_kv_head`, `n_embd`) and calls
`model.forward(ids, kv_cache=cache)`, whose attention layers call `cache.insert_kv(layer_idx, k, v)` and
whose rotary positions start at `cache.get_pos()`.

Sampling several completions of one prompt (`num_samples` > 1) runs the prompt through the model once, with
batch size 1, copies that cache into every row of a bigger one and then decodes all rows together.

Seeding: row i draws its samples from its own `torch.Generator` seeded with `seed + i`. So row i of a run
with `num_samples=N, seed=s` is the same completion as the single row of a run with `num_samples=1,
seed=s+i`, and a single row with `seed=s` samples exactly as `GPT.generate(..., seed=s)` does.
"""

import operator
from collections import deque

import torch
import torch.nn.functional as F

from nanochat.calculator import safe_eval


class KVCache:
    """Keys and values of every layer for a batch of rows: one tensor of shape (L, 2, B, H_kv, T_max, D).

    The tensor is allocated on the first `insert_kv`, with the dtype and device of the keys (so bf16 under
    autocast on cuda), and grows (at least doubling) if a sequence outruns `seq_len`. The position advances once the last layer
    has inserted, so all layers of one forward see the same position.
    """

    def __init__(self, batch_size, num_heads, seq_len, head_dim, num_layers):
        self.batch_size = batch_size
        self.num_heads = num_heads
        self.seq_len = seq_len
        self.head_dim = head_dim
        self.num_layers = num_layers
        self.kv = None
        self.pos = 0

    def reset(self):
        self.pos = 0

    def get_pos(self):
        return self.pos

    def _allocate(self, like: torch.Tensor, seq_len: int):
        shape = (self.num_layers, 2, self.batch_size, self.num_heads, seq_len, self.head_dim)
        self.kv = torch.empty(shape, dtype=like.dtype, device=like.device)
        self.seq_len = seq_len

    def _ensure_room(self, like: torch.Tensor, needed: int):
        if self.kv is None:
            self._allocate(like, max(self.seq_len, needed))
        elif needed > self.kv.size(4):
            # at least double (so a long generation reallocates only a few times), keeping what is cached
            old = self.kv
            self._allocate(old, (max(needed, 2 * old.size(4)) + 255) // 256 * 256)
            self.kv[:, :, :, :, :self.pos] = old[:, :, :, :, :self.pos]

    def insert_kv(self, layer_idx, k, v):
        """Store k, v (B, H_kv, T, D) at the current position of layer `layer_idx`; return all keys and values
        of that layer so far, each (B, H_kv, pos + T, D)."""
        B, H, T, D = k.shape
        if (B, H, D) != (self.batch_size, self.num_heads, self.head_dim):
            raise ValueError(f"KVCache holds (batch {self.batch_size}, {self.num_heads} kv heads, head dim "
                             f"{self.head_dim}) but layer {layer_idx} inserted keys of shape {tuple(k.shape)}")
        t0, t1 = self.pos, self.pos + T
        self._ensure_room(k, t1)
        self.kv[layer_idx, 0, :, :, t0:t1] = k
        self.kv[layer_idx, 1, :, :, t0:t1] = v
        k_all = self.kv[layer_idx, 0, :, :, :t1]
        v_all = self.kv[layer_idx, 1, :, :, :t1]
        if layer_idx == self.num_layers - 1:
            self.pos = t1
        return k_all, v_all

    def prefill(self, other: "KVCache"):
        """Start this (empty) cache from `other`'s contents: a batch-1 cache is copied into every row."""
        if self.pos != 0:
            raise ValueError("prefill() needs an empty cache")
        if other.kv is None:
            raise ValueError("prefill() from a cache that holds nothing yet")
        if (other.num_layers, other.num_heads, other.head_dim) != (self.num_layers, self.num_heads, self.head_dim):
            raise ValueError("prefill() between caches of different models (layers, kv heads or head dim differ)")
        if other.batch_size not in (1, self.batch_size):
            raise ValueError(f"prefill() can copy a batch of 1 or {self.batch_size} rows, not {other.batch_size}")
        self._ensure_room(other.kv, other.pos)
        self.kv[:, :, :, :, :other.pos] = other.kv[:, :, :, :, :other.pos]
        self.pos = other.pos


def sample_next_token(logits, rng, temperature=1.0, top_k=None):
    """Pick the next token of every row from logits (B, vocab); returns a LongTensor (B, 1).

    temperature 0 takes the argmax (rng unused). Otherwise logits are divided by the temperature, all but
    the `top_k` largest are masked out when top_k is given, and one token is drawn from the softmax.
    `rng` is a torch.Generator shared by all rows, or a list of generators, one per row.
    """
    assert logits.ndim == 2, "sample_next_token expects logits of shape (B, vocab)"
    if temperature == 0.0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits / temperature, dim=-1)
    if isinstance(rng, (list, tuple)):
        assert len(rng) == probs.size(0), "one generator per row"
        return torch.cat([torch.multinomial(probs[i:i + 1], 1, generator=g) for i, g in enumerate(rng)], dim=0)
    return torch.multinomial(probs, 1, generator=rng)


class CandidateTap:
    """Watches a model's forward passes and keeps, for row 0's last position, the `k` likeliest next tokens with
    their probabilities (softmax of the logits at temperature 1, before any top-k): what the chat's top-5 view shows.

    It works with any engine, the reference's or a learner's, since it sits on the model, not in the engine:
    `tap = CandidateTap(model)` replaces `model.forward` on that one object, `tap.latest` is [(token, p), ...] for
    the forward that ran last (so for the column the engine yields next), and `tap.close()` puts `forward` back.
    When it is not installed, generation costs exactly what it did.
    """

    def __init__(self, model, k=5):
        self.model, self.k, self.latest = model, k, []
        self._forward = model.forward
        model.forward = self._forward_and_keep

    def _forward_and_keep(self, *args, **kwargs):
        out = self._forward(*args, **kwargs)
        logits = out[0] if isinstance(out, tuple) else out
        probs = torch.softmax(logits[0, -1].float(), dim=-1)
        top = torch.topk(probs, min(self.k, probs.numel()))
        self.latest = list(zip(top.indices.tolist(), top.values.tolist()))
        return out

    def close(self):
        if self.model.__dict__.get("forward") == self._forward_and_keep:
            del self.model.forward


class _Row:
    """What one completion is doing: tokens queued to be forced in, and the calculator expression being read."""

    def __init__(self):
        self.forced = deque()
        self.in_python = False
        self.python_tokens = []
        self.done = False


class Engine:
    def __init__(self, model, tokenizer=None):
        """`tokenizer` finds the special tokens and runs the calculator; None means plain decoding that stops
        only at max_tokens (useful for benchmarks and tests of the cache)."""
        self.model = model
        self.tokenizer = tokenizer
        self.specials = {}
        if tokenizer is not None:
            for name in ("python_start", "python_end", "output_start", "output_end", "assistant_end"):
                self.specials[name] = tokenizer.encode_special(f"<|{name}|>")
            self.specials["bos"] = tokenizer.get_bos_token_id()

    def _new_cache(self, batch_size, seq_len):
        c = self.model.config
        return KVCache(batch_size=batch_size, num_heads=c.n_kv_head, seq_len=seq_len,
                       head_dim=c.n_embd // c.n_head, num_layers=c.n_layer)

    def _context_limit(self):
        """How many positions the model can address: its rotary table's length, else 10x sequence_len."""
        cos = getattr(self.model, "cos", None)
        if isinstance(cos, torch.Tensor) and cos.ndim == 4:  # (1, T, 1, D/2) as in nanochat/gpt.py
            return cos.size(1)
        rotary_seq_len = getattr(self.model, "rotary_seq_len", None)
        if isinstance(rotary_seq_len, int) and rotary_seq_len > 0:
            return rotary_seq_len
        return self.model.config.sequence_len * 10

    @torch.inference_mode()
    def generate(self, tokens, num_samples=1, max_tokens=None, temperature=1.0, top_k=None, seed=42):
        """Stream completions of the prompt `tokens` (a list of ids), `num_samples` rows at once.

        Yields (token_column, token_masks): one new token per row, and 1 where it was sampled, 0 where the
        calculator forced it. A row is finished after <|assistant_end|> or <|bos|>; the stream ends when all
        rows are finished, after `max_tokens` columns, or at the model's context limit.
        """
        try:
            tokens = [operator.index(t) for t in tokens]
        except TypeError:
            tokens = None
        if not tokens:
            raise ValueError("Engine.generate expects the prompt as a non-empty list of token ids")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        limit = self._context_limit()
        if len(tokens) >= limit:
            raise ValueError(f"prompt of {len(tokens)} tokens leaves no room in the model's context of {limit}")
        steps = limit - len(tokens) if max_tokens is None else min(max_tokens, limit - len(tokens))
        device = next(self.model.parameters()).device
        rngs = [torch.Generator(device=device) for _ in range(num_samples)]
        for i, g in enumerate(rngs):
            g.manual_seed(seed + i)

        # one prefill of the prompt with batch 1, then copied into every row of the decode cache
        prefill_cache = self._new_cache(1, len(tokens))
        ids = torch.tensor([tokens], dtype=torch.long, device=device)
        logits = self.model.forward(ids, kv_cache=prefill_cache)[:, -1, :]
        logits = logits.expand(num_samples, -1)
        # room for the whole completion when max_tokens says how long it is; otherwise the cache grows as needed
        expected = steps if max_tokens is not None else min(steps, self.model.config.sequence_len)
        cache = self._new_cache(num_samples, len(tokens) + expected)
        cache.prefill(prefill_cache)
        del prefill_cache

        s = self.specials
        rows = [_Row() for _ in range(num_samples)]
        for step in range(steps):
            sampled = sample_next_token(logits, rngs, temperature, top_k)[:, 0].tolist()
            column, masks = [], []
            for row, token in zip(rows, sampled):
                if row.forced:
                    token, mask = row.forced.popleft(), 0
                else:
                    mask = 1
                column.append(token)
                masks.append(mask)
                if s:
                    self._advance(row, token)
            yield column, masks
            if all(row.done for row in rows) or step == steps - 1:
                break
            ids = torch.tensor(column, dtype=torch.long, device=device).unsqueeze(1)
            logits = self.model.forward(ids, kv_cache=cache)[:, -1, :]

    def _advance(self, row: _Row, token: int):
        """Update one row's state after it emitted `token`: finish, or read/run a calculator expression."""
        s = self.specials
        if token in (s["assistant_end"], s["bos"]):
            row.done = True
        elif token == s["python_start"]:
            row.in_python, row.python_tokens = True, []
        elif token == s["python_end"] and row.in_python:
            row.in_python = False
            result = safe_eval(self.tokenizer.decode(row.python_tokens)) if row.python_tokens else None
            if result is not None:
                row.forced.append(s["output_start"])
                row.forced.extend(self.tokenizer.encode(result))
                row.forced.append(s["output_end"])
            row.python_tokens = []
        elif row.in_python:
            row.python_tokens.append(token)

    def generate_batch(self, tokens, num_samples=1, **kwargs):
        """Run `generate` to the end. Returns (results, masks): per row the prompt followed by the completion
        (the terminating <|assistant_end|>/<|bos|> left out), and masks with 0 for the prompt and forced tokens."""
        results = [list(tokens) for _ in range(num_samples)]
        masks = [[0] * len(tokens) for _ in range(num_samples)]
        done = [False] * num_samples
        terminal = {self.specials["assistant_end"], self.specials["bos"]} if self.specials else set()
        for column, column_masks in self.generate(tokens, num_samples, **kwargs):
            for i, (token, mask) in enumerate(zip(column, column_masks)):
                if done[i]:
                    continue
                if token in terminal:
                    done[i] = True
                else:
                    results[i].append(token)
                    masks[i].append(mask)
            if all(done):
                break
        return results, masks

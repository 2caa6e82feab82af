"""Your GPT. Build it here, one method at a time; the workbench checks each one against nanochat's reference.

Every function and method below has the name and signature of its twin in nanochat/gpt.py. Each body is a
docstring (what goes in, what comes out, where to read up) and a `raise NotImplementedError("TODO: ...")`.
Replace the `raise` with your own code, save, and run

    nanochat-workbench check learner_gpt.py

It runs a small depth-4 model through your code and names the next TODO in the order the code runs. The
methods come in five phases, the same ones STATUS.md tracks:

    1 model construction   GPT.__init__, GPT._precompute_rotary_embeddings, Block.__init__,
                           CausalSelfAttention.__init__, MLP.__init__
    2 weight init          GPT.init_weights, GPT._init_weights
    3 forward pass         norm, apply_rotary_emb, CausalSelfAttention.forward, MLP.forward, Block.forward,
                           GPT.forward
    4 optimisation         GPT.setup_optimizers, GPT.get_device, GPT.estimate_flops
    5 generation           GPT.generate

Ground rules:
- Keep every name and signature. Training, the chat engine and the checks call them exactly as written.
- Keep the imports absolute (`from nanochat.common import ...`): this file is loaded by its path, not as part
  of a package, so relative imports cannot work.
- Use the attribute names the docstrings give (`transformer.wte`, `transformer.h`, `lm_head`, `attn.c_q`, ...).
  Checkpoints, the optimiser split and the checks find weights by those names.
- `nanochat-workbench trace learner_gpt.py` prints every module's shapes and statistics once the forward
  pass runs: a good way to see what your code does.

Shape letters: B batch, T time (sequence length), C = n_embd, H = n_head query heads, Hkv = n_kv_head key/value
heads, D = head_dim = C // H, V = vocab_size.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanochat.common import get_dist_info
from nanochat.muon import Muon, DistMuon
from nanochat.adamw import DistAdamW


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6  # number of query heads
    n_kv_head: int = 6  # number of key/value heads (MQA when 1, GQA when between 1 and n_head)
    n_embd: int = 768


def norm(x):
    """RMSNorm with nothing to learn: give every vector along the last dimension a root-mean-square of 1.

    In:  x of any shape (..., C), e.g. (B, T, C) for the residual stream or (B, T, H, D) for queries/keys.
    Out: a tensor of the same shape and dtype.
    Unlike LayerNorm there is no mean subtraction and no scale or bias parameter. torch.nn.functional has an
    RMS norm you can call; writing it from a mean, a small epsilon and a reciprocal square root works too.

    Lesson: lessons/05-rmsnorm.md § `norm`
    """
    raise NotImplementedError("TODO: normalise x over its last dimension to unit root-mean-square (no weights)")


def apply_rotary_emb(x, cos, sin):
    """Rotary position embedding: rotate channel pairs of x by angles that depend on the position.

    In:  x (B, T, H, D) queries or keys; cos and sin (1, T, 1, D/2), one angle per position and channel pair,
         as made by GPT._precompute_rotary_embeddings (they broadcast over batch and heads).
    Out: (B, T, H, D) in x's dtype (cos/sin may be bf16 on a GPU while x is not).
    Channel i is paired with channel i + D/2 (first half against second half, not neighbours). Each pair is
    turned as a 2-D vector by its angle; the direction matters to match the reference, and the lesson gives
    the 2x2 rotation nanochat uses. Slicing with `...`, broadcasting and torch.cat are all you need.

    Lesson: lessons/06-rotary-embeddings.md § `apply_rotary_emb`
    """
    raise NotImplementedError("TODO: rotate each (first-half, second-half) channel pair of x by its cos/sin angle")


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer_idx):
        """Create the attention weights of block number `layer_idx`.

        In:  config (a GPTConfig) and layer_idx (0 .. n_layer-1; the KV cache stores keys/values per layer).
        Attributes the rest of the code relies on: layer_idx, n_head, n_kv_head, n_embd, head_dim (C // H),
        and four bias-free linear layers:
            c_q    C -> H * D          c_k, c_v    C -> Hkv * D          c_proj    C -> C
        Check the config with a clear message: C must divide evenly into H heads, and H must be a multiple
        of Hkv (every key/value head serves the same number of query heads).
        Hints: nn.Linear(in_features, out_features, bias=...).

        Lesson: lessons/07-attention.md § `CausalSelfAttention.__init__`
        """
        super().__init__()
        raise NotImplementedError("TODO: store the head sizes and create the c_q, c_k, c_v and c_proj projections")

    def forward(self, x, cos_sin, kv_cache):
        """Causal multi-head attention with rotary positions, QK-norm and shared key/value heads.

        In:  x (B, T, C), already normalised by the block; cos_sin = (cos, sin) for these T positions;
             kv_cache None while training, or the Engine's KVCache while generating.
        Out: (B, T, C).
        Think it through in this order: project x to q (B, T, H, D) and k, v (B, T, Hkv, D); apply
        apply_rotary_emb to q and k, then norm them (QK-norm); put the head dimension before time; with a cache,
        `kv_cache.insert_kv(self.layer_idx, k, v)` hands back every key/value so far; attend; merge the heads
        back into (B, T, C); project out with c_proj.
        With a cache, Tq (new queries) can be smaller than Tk (keys so far): decide what each new query may
        see in the three cases (no cache or a fresh prefill, a single new token, a chunk after a prefix).
        Hints: Tensor.view / transpose / contiguous, and F.scaled_dot_product_attention (read what is_causal,
        attn_mask and enable_gqa do).

        Lesson: lessons/07-attention.md § `CausalSelfAttention.forward`
        """
        raise NotImplementedError("TODO: project to q/k/v, rotate and QK-norm q and k, attend causally, project out")


class MLP(nn.Module):
    def __init__(self, config):
        """Create the feed-forward layer's weights.

        Two bias-free linear layers: c_fc C -> 4C (widen) and c_proj 4C -> C (back to the residual width).

        Lesson: lessons/08-mlp.md § `MLP.__init__`
        """
        super().__init__()
        raise NotImplementedError("TODO: create c_fc (n_embd -> 4*n_embd) and c_proj (4*n_embd -> n_embd), no bias")

    def forward(self, x):
        """Widen, apply the non-linearity, project back.

        In:  x (B, T, C). Out: (B, T, C); in between the activations are (B, T, 4C).
        The non-linearity is relu² (a ReLU, then squared element-wise), not GELU.

        Lesson: lessons/08-mlp.md § `MLP.forward`
        """
        raise NotImplementedError("TODO: c_fc, then relu squared, then c_proj")


class Block(nn.Module):
    def __init__(self, config, layer_idx):
        """One transformer block: an attention layer and an MLP.

        Attributes: attn (a CausalSelfAttention for this layer_idx) and mlp (an MLP).

        Lesson: lessons/04-the-block.md § `Block.__init__`
        """
        super().__init__()
        raise NotImplementedError("TODO: create self.attn and self.mlp")

    def forward(self, x, cos_sin, kv_cache):
        """Pre-norm residual block.

        In:  x (B, T, C) the residual stream; cos_sin and kv_cache are passed through to attention.
        Out: (B, T, C).
        Each sublayer (attention first, then the MLP) reads a normalised copy of the stream, and its output is
        added back onto the stream.

        Lesson: lessons/04-the-block.md § `Block.forward`
        """
        raise NotImplementedError("TODO: add attention of the normed stream, then the MLP of the normed stream")


class GPT(nn.Module):
    def __init__(self, config):
        """Build the whole model's structure (the weights get their values later, in init_weights).

        In:  config, a GPTConfig. Attributes to create:
            config          the config itself
            transformer     an nn.ModuleDict with "wte" (nn.Embedding V -> C) and "h" (an nn.ModuleList of
                            n_layer Blocks, layer_idx 0, 1, ...)
            lm_head         bias-free linear C -> V, separate from wte (the weights are not tied)
            rotary_seq_len  10 * sequence_len, so generation can run past the training length
            cos, sin        buffers from _precompute_rotary_embeddings(rotary_seq_len, head_dim), registered
                            with persistent=False (derived from the config, so kept out of checkpoints)
        Hints: nn.ModuleDict, nn.ModuleList, nn.Embedding, Module.register_buffer.

        Lesson: lessons/03-embeddings-and-config.md § `GPT.__init__`
        """
        super().__init__()
        raise NotImplementedError("TODO: create config, transformer (wte + blocks), lm_head and the cos/sin buffers")

    def init_weights(self):
        """Give every weight its starting value (called once after construction, on the final device).

        Apply _init_weights to every submodule; then set lm_head and every block's attn.c_proj and mlp.c_proj
        to zero, so each block starts out adding nothing to the residual stream. Recompute cos/sin with
        _precompute_rotary_embeddings: a model may have been built on the "meta" device and moved, and its
        buffers then hold garbage. On cuda, nanochat keeps the embedding table in bfloat16 to save memory.
        Hints: Module.apply, torch.nn.init.zeros_. Returns nothing.

        Lesson: lessons/10-initialisation.md § `GPT.init_weights`
        """
        raise NotImplementedError("TODO: init every layer, zero lm_head and the output projections, redo cos/sin")

    def _init_weights(self, module):
        """The starting value for one module (init_weights applies this to every submodule).

        nn.Linear: normal, mean 0, std = 1/sqrt(fan_in) * min(1, sqrt(fan_out / fan_in)). Remember a Linear's
        weight is stored (out_features, in_features).
        nn.Embedding: normal, mean 0, std 1.
        Anything else: leave it alone. Hints: isinstance, torch.nn.init.normal_.

        Lesson: lessons/10-initialisation.md § `GPT._init_weights`
        """
        raise NotImplementedError("TODO: normal init for Linear (fan-in scaled std) and Embedding (std 1)")

    def _precompute_rotary_embeddings(self, seq_len, head_dim, base=10000, device=None):
        """The cos/sin tables that apply_rotary_emb uses, for positions 0 .. seq_len-1.

        In:  seq_len, head_dim (D), base (the frequency base), device (None: the device of transformer.wte).
        Out: (cos, sin), each (1, seq_len, 1, D/2), float32 (bfloat16 on cuda).
        Channel pair j turns at the frequency base ** (-2j / D): pair 0 fastest, the last pair slowest. The
        angle at position t is t times that frequency.
        Hints: torch.arange (mind the dtype and device), torch.outer, indexing with None to add dimensions.

        Lesson: lessons/06-rotary-embeddings.md § `GPT._precompute_rotary_embeddings`
        """
        raise NotImplementedError("TODO: angles = positions x per-pair frequencies; return their cos and sin")

    def get_device(self):
        """The torch.device the model's weights are on (the embedding table's device will do).

        Lesson: lessons/12-training-loop.md § `GPT.get_device`
        """
        raise NotImplementedError("TODO: return the device the weights live on")

    def estimate_flops(self):
        """Training FLOPs per token, used for MFU and to size training runs.

        6 FLOPs per parameter per token (forward and backward) for every parameter except the embedding table
        (a lookup, not a matmul), plus the attention matmuls, which have no parameters:
        12 * n_layer * n_head * head_dim * sequence_len. Returns a number.

        Lesson: lessons/12-training-loop.md § `GPT.estimate_flops`
        """
        raise NotImplementedError("TODO: 6 x non-embedding parameters + the attention term")

    def setup_optimizers(self, unembedding_lr=0.004, embedding_lr=0.2, matrix_lr=0.02, weight_decay=0.0):
        """Split the parameters between two optimisers and return them as [adamw, muon].

        AdamW (betas (0.8, 0.95), eps 1e-10, the given weight_decay) gets two groups: lm_head at
        unembedding_lr and wte at embedding_lr, both multiplied by (n_embd / 768) ** -0.5. Muon (momentum 0.95,
        lr matrix_lr) gets every parameter inside the blocks. Every parameter must land in exactly one group.
        Under torchrun (see get_dist_info) use DistAdamW and DistMuon instead. Give every param group of both
        optimisers an "initial_lr" equal to its lr: the training loop's schedule scales from it.
        Hints: torch.optim.AdamW takes a list of dicts as groups; fused=True is only for cuda.

        Lesson: lessons/11-optimisers.md § `GPT.setup_optimizers`
        """
        raise NotImplementedError("TODO: AdamW for lm_head and wte, Muon for the block matrices; return [adamw, muon]")

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean"):
        """Token ids in, logits (or the loss) out.

        In:  idx (B, T) token ids; targets None or (B, T) ids (-1 means "no loss here"); kv_cache None or the
             Engine's cache, whose get_pos() says how many positions it already holds; loss_reduction as in
             F.cross_entropy.
        Out: without targets, logits (B, T, V); with targets, the cross-entropy loss (a scalar for "mean").
        Path: take cos/sin for positions T0 .. T0+T-1 (T0 = 0 without a cache) → embed → norm → every block →
        norm → lm_head → softcap the logits to (-15, 15) with 15 * tanh(logits / 15). Compute the loss in
        float32 on the softcapped logits, flattened to (B*T, V).

        Lesson: lessons/09-logits-and-loss.md § `GPT.forward`
        """
        raise NotImplementedError("TODO: embed, norm, blocks, norm, lm_head, softcap; cross-entropy if targets")

    @torch.inference_mode()
    def generate(self, tokens, max_tokens, temperature=1.0, top_k=None, seed=42):
        """Sample up to max_tokens new tokens after the prompt, yielding each id (an int) as it is chosen.

        In:  tokens, the prompt as a list of ints; temperature 0 means always the most likely token; top_k None
             or the number of most likely tokens to sample among; seed for a torch.Generator on the model's
             device, so the same seed gives the same text.
        This is a generator (use `yield`). There is no KV cache here: every step runs the whole sequence so
        far and reads the logits of the last position.
        Hints: torch.topk, F.softmax, torch.multinomial(..., generator=...), torch.argmax, torch.cat.

        Lesson: lessons/13-generation.md § `GPT.generate`
        """
        raise NotImplementedError("TODO: max_tokens times: forward, pick the next id (greedy/top-k/sampled), yield it")

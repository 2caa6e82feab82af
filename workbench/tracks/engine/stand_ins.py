"""What the engine probes run the learner's code on: a byte tokenizer with nanochat's special tokens, a scripted
model that writes a fixed answer (with a calculator call) through the cache, and a tiny random reference GPT.

The Engine needs a tokenizer only for its special tokens and the calculator (encode a result, decode an
expression), and a model only for `config`, `parameters()` and `forward(ids, kv_cache=cache)`, so these small
stand-ins exercise it exactly as a trained checkpoint would, in milliseconds and with no files.
"""

from types import SimpleNamespace

import torch

from nanochat.tokenizer import SPECIAL_TOKENS

SPECIAL = {name[2:-2]: 256 + i for i, name in enumerate(SPECIAL_TOKENS)}  # "python_start" -> id
VOCAB = 256 + len(SPECIAL_TOKENS)


class ByteTokenizer:
    """Token i < 256 is the byte i; nanochat's special tokens follow."""

    def encode_special(self, text: str) -> int:
        return SPECIAL[text[2:-2]]

    def get_bos_token_id(self) -> int:
        return SPECIAL["bos"]

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", "replace")


def text_ids(text: str) -> list[int]:
    return list(text.encode("utf-8"))


PROMPT = [SPECIAL["bos"], *text_ids("sum?")]
FILLER = text_ids("z")[0]
# what the scripted model writes after the prompt: a calculator call, three positions the engine fills with the
# forced answer (their logits are ignored), a short reply, the end of the turn, then filler nobody should read
SCRIPT = [SPECIAL["python_start"], *text_ids("1+2"), SPECIAL["python_end"], FILLER, FILLER, FILLER,
          *text_ids("ok"), SPECIAL["assistant_end"]]


class ScriptedModel(torch.nn.Module):
    """At absolute position p its logits point at SCRIPT[p - len(PROMPT) + 1], whatever it is fed; each forward
    inserts into every layer of the cache (the token ids as keys and values) and is recorded in `calls`."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(n_layer=2, n_head=2, n_kv_head=1, n_embd=8, sequence_len=64, vocab_size=VOCAB)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the Engine a device to read
        self.calls: list[tuple[int, int, int | None]] = []  # (batch, tokens, cache position or None)

    def forward(self, ids, targets=None, kv_cache=None):
        B, T = ids.shape
        t0 = kv_cache.get_pos() if kv_cache is not None else 0
        self.calls.append((B, T, t0 if kv_cache is not None else None))
        if kv_cache is not None:
            kv = ids.to(torch.float32)[:, None, :, None].expand(B, 1, T, 4).contiguous()
            for layer in range(self.config.n_layer):
                kv_cache.insert_kv(layer, kv, kv)
        logits = torch.full((B, T, VOCAB), -10.0)
        for i in range(T):
            p = t0 + i - (len(PROMPT) - 1)
            logits[:, i, SCRIPT[p] if 0 <= p < len(SCRIPT) else FILLER] = 10.0
        return logits


class Recorder(torch.nn.Module):
    """Wraps a model: records (batch, tokens, cache position or None) per forward and the last cache it was given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config
        self.cos = getattr(model, "cos", None)
        self.calls: list[tuple[int, int, int | None]] = []
        self.last_cache = None

    def forward(self, ids, targets=None, kv_cache=None):
        self.calls.append((ids.size(0), ids.size(1), kv_cache.get_pos() if kv_cache is not None else None))
        if kv_cache is not None:
            self.last_cache = kv_cache
        return self.model.forward(ids, kv_cache=kv_cache)


def tiny_gpt(seed: int = 0):
    """A 2-layer reference GPT with every weight random (init_weights zeroes the head: all logits would tie)."""
    from nanochat.gpt import GPT, GPTConfig
    torch.manual_seed(seed)
    model = GPT(GPTConfig(sequence_len=64, vocab_size=VOCAB, n_layer=2, n_head=2, n_kv_head=1, n_embd=32))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


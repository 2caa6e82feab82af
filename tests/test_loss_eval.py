"""Bits per byte: the closed form for a uniform model, special tokens and ignored targets left out, and the
same figure as a by-hand sum over per-token losses. (Under torchrun: tests/test_ddp.py.)"""

import math

import pytest
import torch
import torch.nn.functional as F

from nanochat.gpt import GPT, GPTConfig
from nanochat.loss_eval import evaluate_bpb

VOCAB = 50


def tiny_model(uniform):
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=16, vocab_size=VOCAB, n_layer=1, n_head=1, n_kv_head=1, n_embd=64))
    model.init_weights()  # the head starts at zero: every token has probability 1/VOCAB
    if not uniform:
        with torch.no_grad():
            model.lm_head.weight.normal_()
    return model.eval()


def batches(n, rows=2, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, VOCAB, (rows, T), generator=g), torch.randint(0, VOCAB, (rows, T), generator=g))
            for _ in range(n)]


def test_uniform_model_costs_log2_vocab_bits_per_token():
    model = tiny_model(uniform=True)
    one_byte = torch.ones(VOCAB, dtype=torch.long)
    assert evaluate_bpb(model, batches(3), 3, one_byte) == pytest.approx(math.log2(VOCAB), rel=1e-5)
    assert evaluate_bpb(model, batches(3), 3, 2 * one_byte) == pytest.approx(math.log2(VOCAB) / 2, rel=1e-5)


def test_matches_a_by_hand_sum_skipping_specials_and_ignored_targets():
    model = tiny_model(uniform=False)
    token_bytes = torch.randint(1, 5, (VOCAB,), generator=torch.Generator().manual_seed(3))
    token_bytes[:5] = 0  # five "special tokens"
    data = batches(2)
    data[0][1][0, :4] = -1  # ignored targets
    data[1][1][1, :3] = torch.tensor([0, 1, 2])  # targets that are specials
    nats, nbytes = 0.0, 0
    with torch.no_grad():
        for x, y in data:
            logits = model(x).float()
            for logit_row, target in zip(logits.view(-1, VOCAB), y.view(-1).tolist()):
                if target >= 0 and token_bytes[target] > 0:
                    nats += F.cross_entropy(logit_row[None], torch.tensor([target])).item()
                    nbytes += token_bytes[target].item()
    expected = nats / (math.log(2) * nbytes)
    # the loader yields (inputs, targets, state) triples: those work too
    triples = [(x, y, {"position": i}) for i, (x, y) in enumerate(data)]
    assert evaluate_bpb(model, iter(triples), 2, token_bytes) == pytest.approx(expected, rel=1e-5)


def test_nothing_to_count_is_infinite():
    model = tiny_model(uniform=True)
    assert evaluate_bpb(model, batches(1), 1, torch.zeros(VOCAB, dtype=torch.long)) == math.inf

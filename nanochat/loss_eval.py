"""Bits per byte: the validation loss that does not depend on the tokenizer.

Mean cross-entropy per token changes when the vocabulary changes (bigger tokens, fewer of them, each harder
to predict). Dividing the total loss by the number of bytes those tokens stand for instead gives a figure that
two models with different tokenizers can be compared on:

    bpb = sum over target tokens of loss (nats) / (ln 2 * sum over the same tokens of their length in bytes)

Special tokens (length 0 bytes in `token_bytes`) and ignored targets (-1) count for neither sum. Under torchrun
both sums are added up across ranks first, so every rank returns the same figure.
"""

import math

import torch
import torch.distributed as dist


@torch.no_grad()
def evaluate_bpb(model, batches, steps, token_bytes):
    """Run `steps` batches from `batches` (yielding (inputs, targets) or (inputs, targets, state)) through
    `model` and return bits per byte. `token_bytes` is a LongTensor (vocab,) of bytes per token id.
    Returns inf if no target token had any bytes."""
    device = next(model.parameters()).device
    token_bytes = token_bytes.to(device)
    total_nats = torch.zeros((), dtype=torch.float64, device="cpu" if device.type == "mps" else device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=total_nats.device)
    batch_iter = iter(batches)
    for _ in range(steps):
        x, y = next(batch_iter)[:2]
        loss = model(x, y, loss_reduction="none").view(-1)
        y = y.reshape(-1)
        valid = y >= 0
        nbytes = torch.where(valid, token_bytes[torch.where(valid, y, 0)], 0)
        counted = nbytes > 0
        total_nats += torch.where(counted, loss.float(), 0.0).sum().to(total_nats)
        total_bytes += nbytes.sum().to(total_bytes)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total_nats, op=dist.ReduceOp.SUM)
        dist.all_reduce(total_bytes, op=dist.ReduceOp.SUM)
    total_bytes = total_bytes.item()
    if total_bytes == 0:
        return float("inf")
    return total_nats.item() / (math.log(2) * total_bytes)

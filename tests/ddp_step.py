"""Three training steps of a tiny GPT, run either alone or under torchrun; used by test_ddp.py.

    python tests/ddp_step.py OUT.pt                                  # one process, the whole batch
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_step.py OUT.pt

Every step uses the same global batch of 4 rows. Under torchrun, rank r trains on rows r, r+W, ... (W = world
size); each rank's loss is the mean over its rows, and the distributed optimizers average the gradients over
ranks, so with equal rows per rank the update is that of the mean over the whole batch, as in one process.
Then bits per byte is evaluated on validation batches split the same way. Rank 0 saves the parameters, the
per-step global losses and the bpb to OUT.pt.

The run is in float64 so that the comparison is sharp: in float32 a few gradient entries sit at rounding-noise
level, and Adam's first step (about lr * sign(grad)) can turn that noise into a visible difference.
"""

import sys

import torch
import torch.distributed as dist

from nanochat.common import compute_cleanup, compute_init
from nanochat.gpt import GPT, GPTConfig
from nanochat.loss_eval import evaluate_bpb

VOCAB, T, GLOBAL_ROWS, STEPS = 80, 16, 4, 3


def main(out_path):
    torch.set_default_dtype(torch.float64)
    ddp, rank, _, world_size, device = compute_init("cpu", seed=0)
    assert GLOBAL_ROWS % world_size == 0
    torch.manual_seed(0)
    model = GPT(GPTConfig(sequence_len=T, vocab_size=VOCAB, n_layer=2, n_head=2, n_kv_head=1, n_embd=64))
    model.init_weights()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizers = model.setup_optimizers()
    data = torch.randint(0, VOCAB, (STEPS + 2, GLOBAL_ROWS, T + 1), generator=torch.Generator().manual_seed(1))

    losses = []
    for step in range(STEPS):
        rows = data[step, rank::world_size]
        loss = model(rows[:, :-1].contiguous(), rows[:, 1:].contiguous())
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        global_loss = loss.detach().clone()
        if ddp:
            dist.all_reduce(global_loss)
            global_loss /= world_size
        losses.append(global_loss.item())

    token_bytes = torch.randint(0, 4, (VOCAB,), generator=torch.Generator().manual_seed(2))
    val = [(b[rank::world_size, :-1].contiguous(), b[rank::world_size, 1:].contiguous()) for b in data[STEPS:]]
    bpb = evaluate_bpb(model, val, len(val), token_bytes)

    if rank == 0:
        torch.save({"initial": initial, "params": model.state_dict(), "losses": losses, "bpb": bpb,
                    "world_size": world_size, "optimizers": [type(o).__name__ for o in optimizers]}, out_path)
    compute_cleanup()


if __name__ == "__main__":
    main(sys.argv[1])

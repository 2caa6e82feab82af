"""Turning rendered conversations into training batches: packed rows for mid-training, padded rows for SFT.

Mid-training treats conversations like pretraining treats documents: their tokens are laid end to end and cut
into rows of `seq_len`, so no position is wasted on padding; every token is a target. Where the next batch
starts is a `PackPosition` (which conversation, how many of its tokens are used), two integers that a checkpoint
stores, so a resumed run reads exactly the tokens the interrupted one would have read next.

SFT keeps one conversation per row instead: rows of different lengths are padded to the longest in the batch,
and only what the assistant writes is a target (the `render_conversation` mask); everything else, padding
included, has target -1, which the model's cross-entropy ignores.
"""

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class PackPosition:
    index: int = 0  # position in this rank's sequence of conversations
    offset: int = 0  # tokens of that conversation already used

    def to_dict(self):
        return asdict(self)


def read_window(conversation_tokens, start: PackPosition, length: int):
    """`length` tokens laid end to end from `start`; `conversation_tokens(index)` gives one conversation's ids.

    Returns (tokens, restart): `restart` is the position of the window's last token, where the next window starts,
    so consecutive windows share one token and every (input, target) pair is trained on exactly once.
    """
    tokens = []
    index, offset = start.index, start.offset
    restart = None
    while len(tokens) < length:
        conversation = conversation_tokens(index)
        if offset >= len(conversation):
            index, offset = index + 1, 0
            continue
        if restart is None and len(tokens) + len(conversation) - offset >= length:
            restart = PackPosition(index, offset + (length - 1 - len(tokens)))
        piece = conversation[offset: offset + length - len(tokens)]
        tokens.extend(piece)
        index, offset = index + 1, 0
    return tokens, restart


def packed_batch(conversation_tokens, start: PackPosition, rows: int, seq_len: int, device="cpu"):
    """(inputs, targets, next_start): `rows` x `seq_len` tokens from `start`, targets shifted by one."""
    tokens, restart = read_window(conversation_tokens, start, rows * seq_len + 1)
    buffer = torch.tensor(tokens, dtype=torch.long)
    inputs = buffer[:-1].view(rows, seq_len).to(device)
    targets = buffer[1:].view(rows, seq_len).to(device)
    return inputs, targets, restart


def collate_sft(rows, pad_id: int, device="cpu"):
    """Pad `rows` of (ids, mask) into (inputs, targets), both (len(rows), L - 1) with L the longest row.

    inputs[i, t] = ids[t] (pad_id past the row's end); targets[i, t] = ids[t + 1] where mask[t + 1] is 1,
    else -1 (the prompt, tool output, padding: never trained on).
    """
    width = max(len(ids) for ids, _ in rows) - 1
    inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        if len(ids) != len(mask):
            raise ValueError(f"row {i}: {len(ids)} ids but {len(mask)} mask entries")
        n = len(ids) - 1
        ids_t = torch.tensor(ids, dtype=torch.long)
        mask_t = torch.tensor(mask[1:], dtype=torch.bool)
        inputs[i, :n] = ids_t[:-1]
        targets[i, :n] = torch.where(mask_t, ids_t[1:], torch.full_like(ids_t[1:], -1))
    return inputs.to(device), targets.to(device)

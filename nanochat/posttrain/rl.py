"""The policy-gradient pieces of RL on verifiable answers (nanochat's simplified GRPO).

For one problem, k completions are sampled and each gets a reward (1 for a correct final answer, else 0). The
advantage of a completion is its reward minus the mean reward of the k (no division by the standard deviation,
no KL term, no clipping): better-than-average answers are made more likely, worse ones less. The loss is
-(advantage x log-probability) summed over the tokens the model sampled (not the prompt, not tool output the
engine forced) and divided by the number of such tokens.

pass@k is the fraction of problems for which at least one of the first k completions was correct.
"""

import torch


def advantages(rewards):
    """rewards (k,) of one problem's completions -> rewards - mean(rewards)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    return rewards - rewards.mean()


def rollout_batch(sequences, masks, pad_id: int, device="cpu"):
    """Pad sampled rows (prompt + completion ids, with masks 1 where sampled) into (inputs, targets).

    Like SFT rows: targets[i, t] = ids[t + 1] where that token was sampled, -1 elsewhere (prompt, forced tool
    output, padding), so the log-probabilities that count are exactly those of the model's own choices.
    """
    from nanochat.posttrain.batches import collate_sft

    return collate_sft(list(zip(sequences, masks)), pad_id, device=device)


def policy_gradient_loss(token_logp, targets, row_advantages):
    """-(sum over sampled tokens of advantage x log p) / number of sampled tokens.

    token_logp (B, T): log-probability of each target token (anything where targets is -1 is ignored);
    row_advantages (B,): one advantage per row.
    """
    valid = (targets >= 0).to(token_logp.dtype)
    objective = (token_logp * valid * row_advantages.unsqueeze(1)).sum()
    return -objective / valid.sum().clamp(min=1)


def pass_at_k(outcomes, k: int) -> float:
    """outcomes: per problem, whether each completion (in sampling order) was correct. Mean of any(first k)."""
    if not outcomes:
        raise ValueError("pass_at_k needs at least one problem")
    if any(len(row) < k for row in outcomes):
        raise ValueError(f"pass@{k} needs at least {k} completions per problem")
    return sum(any(row[:k]) for row in outcomes) / len(outcomes)

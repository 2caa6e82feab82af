"""Probe for sample_next_token: greedy at temperature 0, the generator used, one generator per row, and the
distribution drawn from at a temperature and a top-k.

Draws are first compared with the reference's from equally seeded generators. When they differ, the learner's
tokens may still come from the right distribution (a different but equivalent order of operations), so 8,000
draws are compared with the reference's probabilities and with those of the usual mistakes (greedy, temperature
ignored or inverted, top-k off by one or ignored); the nearest one is named.
"""

import torch

from workbench.tracks.base import Exercise
from workbench.tracks.engine.rows import with_context
from workbench.tracks.outcome import attempt, mismatch, passed

# eight logits, the likeliest not first; the top four close together so that top-k and temperature show
LOGITS = torch.tensor([0.5, 2.0, -1.0, 1.6, 0.0, 1.8, -0.5, 1.4])
DRAWS = 8000
SAME_DISTRIBUTION = 0.04  # total variation distance; sampling noise at 8,000 draws is about 0.01
CASES = ((1.0, None), (0.5, None), (1.0, 4))


def probabilities(temperature: float, top_k: int | None) -> torch.Tensor:
    """What the reference samples from, in float64."""
    logits = LOGITS.double()
    if top_k:
        logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], float("-inf"))
    return torch.softmax(logits / temperature, dim=-1)


def _mistakes(temperature: float, top_k: int | None) -> dict[str, torch.Tensor]:
    greedy = torch.zeros_like(LOGITS, dtype=torch.float64)
    greedy[LOGITS.argmax()] = 1.0
    out = {"temperature ignored (always greedy)": greedy,
           "the temperature is ignored (logits not divided by it)": probabilities(1.0, top_k),
           "the temperature multiplies the logits instead of dividing them": probabilities(1.0 / temperature, top_k)}
    if top_k:
        out |= {f"top-k keeps k-1 tokens (top_k={top_k} drew from {top_k - 1})": probabilities(temperature, top_k - 1),
                f"top-k keeps k+1 tokens (top_k={top_k} drew from {top_k + 1})": probabilities(temperature, top_k + 1),
                "top-k is ignored": probabilities(temperature, None)}
    else:
        out |= {"it keeps only a few tokens although top_k is None": probabilities(temperature, 4)}
    return out


def _draw(exercise, learner, fn, temperature, top_k, seed=123):
    rng = torch.Generator().manual_seed(seed)
    got, bad = attempt(exercise, learner, fn, LOGITS.expand(DRAWS, -1).clone(), rng, temperature, top_k)
    if bad:
        return None, bad
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (DRAWS, 1):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return None, mismatch(exercise, f"for logits of shape ({DRAWS}, {LOGITS.numel()}) it returned {shape}; "
                                        f"expected a LongTensor of shape (B, 1)")
    return got[:, 0].long(), None


def _distribution(exercise, learner, reference, temperature, top_k):
    """None when the draws match the reference or its distribution, else the failing row."""
    mine, bad = _draw(exercise, learner, learner.sample_next_token, temperature, top_k)
    if bad:
        return bad
    if torch.equal(mine, reference.sample_next_token(LOGITS.expand(DRAWS, -1).clone(),
                                                     torch.Generator().manual_seed(123), temperature, top_k)[:, 0]):
        return None
    again, bad = _draw(exercise, learner, learner.sample_next_token, temperature, top_k)
    if bad:
        return bad
    if not torch.equal(mine, again):
        return mismatch(exercise, "two generators seeded alike gave different tokens: draw with generator=rng, "
                                  "not torch's global generator")
    seen = torch.bincount(mine.clamp(0, LOGITS.numel() - 1), minlength=LOGITS.numel()).double() / DRAWS
    distance = 0.5 * (seen - probabilities(temperature, top_k)).abs().sum().item()
    if distance <= SAME_DISTRIBUTION:
        return None
    named = {why: 0.5 * (seen - p).abs().sum().item() for why, p in _mistakes(temperature, top_k).items()}
    why, closest = min(named.items(), key=lambda item: item[1])
    where = f"at temperature {temperature}, top_k {top_k}: "
    if closest <= SAME_DISTRIBUTION:
        return mismatch(exercise, where + why, distance)
    return mismatch(exercise, where + f"the tokens drawn do not follow the reference's probabilities "
                                      f"(total variation {distance:.3f})", distance)


def _per_row_generators(exercise, learner):
    """Row i must draw with rng[i]: the same tokens as a single row drawn with a generator seeded like rng[i]."""
    rows = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    singles = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    for _ in range(20):
        together, bad = attempt(exercise, learner, learner.sample_next_token, LOGITS.expand(3, -1).clone(), rows, 1.0)
        if bad:
            return with_context(bad, "with one generator per row (a list, as Engine.generate passes)")
        for i, g in enumerate(singles):
            alone, bad = attempt(exercise, learner, learner.sample_next_token, LOGITS[None].clone(), g, 1.0)
            if bad:
                return bad
            if int(together[i, 0]) != int(alone[0, 0]):
                return mismatch(exercise, f"with a list of generators, row {i} must draw with rng[{i}] (its tokens "
                                          f"differ from a single row drawn with that generator)")
    return None


def sample_next_token(exercise: Exercise, learner, reference):
    logits = torch.stack([LOGITS, LOGITS.flip(0), LOGITS.roll(3)])
    greedy, bad = attempt(exercise, learner, learner.sample_next_token, logits.clone(), None, 0.0)
    if bad:
        return with_context(bad, "at temperature 0 (greedy, no generator)")
    want = logits.argmax(dim=-1, keepdim=True)
    if not isinstance(greedy, torch.Tensor) or tuple(greedy.shape) != (3, 1):
        shape = tuple(greedy.shape) if isinstance(greedy, torch.Tensor) else type(greedy).__name__
        return mismatch(exercise, f"at temperature 0 it returned {shape} for 3 rows; expected shape (3, 1)")
    if not torch.equal(greedy.long(), want):
        return mismatch(exercise, "temperature 0 must take the argmax of each row (greedy)")
    for temperature, top_k in CASES:
        bad = _distribution(exercise, learner, reference, temperature, top_k)
        if bad:
            return bad
    bad = _per_row_generators(exercise, learner)
    if bad:
        return bad
    return passed(exercise, f"greedy at 0; {DRAWS:,} draws at temperatures 1 and 0.5 and with top-k 4 follow the "
                            f"reference's probabilities; one generator per row")

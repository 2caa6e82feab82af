"""The training track's check: the learner's schedule and optimizer step against nanochat/training.py.

The schedules are compared at every step of a few runs. The two functions that train are run on the same tiny
language model (same seed, same batches) as the reference: `accumulate_gradients` with a loader that counts what
is taken from it and an autocast context that counts its uses; `optimizer_step` with stand-ins for AdamW and Muon
(their param groups, a plain SGD step) that record, at the moment each one steps, the learning rates, the momentum
and the gradients they see. So "clips after the step" or "sets the lr after the step" is observed, not guessed. Numeric
differences are re-checked in float64 to tell wrong math from float rounding.
"""

from types import ModuleType

import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.check.result import Component
from workbench.tracks.outcome import attempt, max_diff_all, mismatch, numeric, passed
from workbench.tracks.training.spec import EXERCISES

EX = {e.qualname: e for e in EXERCISES}
EXACT = 1e-12  # schedules are plain float arithmetic
# (num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac)
SCHEDULES = ((100, 0.0, 0.2, 0.0), (100, 0.1, 0.3, 0.05), (50, 0.04, 0.5, 0.1), (37, 0.1, 0.25, 0.0))
MOMENTUM_STEPS = 600
VOCAB, DIM, BATCH, SEQ, ACCUM = 32, 16, 2, 8, 3
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


# ---------------------------------------------------------------------------------------------------------------
# the schedules

def schedule(fn, params) -> list:
    return [fn(s, *params) for s in range(params[0] + 1)]


def momentum_schedule(fn) -> list:
    return [fn(s) for s in range(MOMENTUM_STEPS)]


def not_a_number(values: list) -> str | None:
    """What the first value that is not a number is ("step 0: your function returned None, ..."), or None."""
    for step, value in enumerate(values):
        if isinstance(value, bool) or not (isinstance(value, (int, float))
                                           or (isinstance(value, torch.Tensor) and value.numel() == 1)):
            what = (f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                    else "None (a missing return?)" if value is None else f"a {type(value).__name__}")
            return f"step {step}: your function returned {what}; it should return one number (a float)"
    return None


def as_floats(values: list) -> list[float]:
    return [float(v) for v in values]


def _warmdown_backwards(got: list, want: list) -> bool:
    """Where the reference falls, the learner's multiplier rises."""
    falls = [i for i in range(1, len(want)) if want[i] < want[i - 1] - 1e-9]
    return len(falls) > 1 and all(got[i] > got[i - 1] for i in falls[1:])


def _schedule_mistake(got: list, want: list, params) -> str:
    n, warmup_ratio, warmdown_ratio, final = params
    if _warmdown_backwards(got, want):
        return "your warmdown runs backwards: the multiplier should fall from 1 towards final_lr_frac"
    if want[0] < 1 and got[0] == 0:
        return "warmup starts at 0, so step 0 changes nothing: the reference reaches (step + 1) / warmup_steps"
    if want[0] < 1 and got[0] == 1:
        return "no warmup: the multiplier should rise linearly over the first warmup_ratio of the steps"
    if final > 0 and abs(got[n]) < EXACT:
        return "the warmdown ends at 0: it should end at final_lr_frac"
    s = next(s for s, (g, w) in enumerate(zip(got, want)) if not abs(g - w) <= EXACT)
    return f"step {s}: got {got[s]!r}, the reference {want[s]!r}"


def probe_lr_multiplier(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["lr_multiplier"]
    for params in SCHEDULES:
        want = [reference.lr_multiplier(s, *params) for s in range(params[0] + 1)]
        got, failed = attempt(ex, learner, schedule, learner.lr_multiplier, params)
        if failed:
            return failed
        problem = not_a_number(got)
        if problem:
            return mismatch(ex, problem)
        got = as_floats(got)
        diff = max(abs(g - w) for g, w in zip(got, want))
        if not diff <= EXACT:
            n, wu, wd, final = params
            run = f"{n} steps, warmup_ratio {wu}, warmdown_ratio {wd}, final_lr_frac {final}"
            return mismatch(ex, f"{run}: {_schedule_mistake(got, want, params)}", diff)
    return passed(ex, f"every step of {len(SCHEDULES)} runs (with and without warmup, to 0 and to a floor)", 0.0)


def probe_muon_momentum(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["muon_momentum"]
    want = [reference.muon_momentum(s) for s in range(MOMENTUM_STEPS)]
    got, failed = attempt(ex, learner, momentum_schedule, learner.muon_momentum)
    if failed:
        return failed
    problem = not_a_number(got)
    if problem:
        return mismatch(ex, problem)
    got = as_floats(got)
    diff = max(abs(g - w) for g, w in zip(got, want))
    if diff <= EXACT:
        return passed(ex, f"steps 0-{MOMENTUM_STEPS - 1}: 0.85 rising to 0.95, then flat", 0.0)
    if got[0] > got[-1]:
        why = "the momentum ramps the wrong way: it starts at 0.85 and rises to 0.95"
    elif max(got) > max(want) + EXACT:
        why = f"the momentum keeps rising after the warmup (up to {max(got):.3f}): it stays at 0.95 from then on"
    else:
        s = next(s for s, (g, w) in enumerate(zip(got, want)) if not abs(g - w) <= EXACT)
        why = f"step {s}: got {got[s]!r}, the reference {want[s]!r}"
    return mismatch(ex, why, diff)


# ---------------------------------------------------------------------------------------------------------------
# a tiny model, a counting loader and a counting autocast

class TinyLM(nn.Module):
    """Embedding, one hidden matrix, an unembedding: enough for AdamW and Muon groups and a real loss."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, DIM)
        self.hidden = nn.Linear(DIM, DIM, bias=False)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, idx, targets):
        x = self.wte(idx)
        x = x + torch.tanh(self.hidden(x))
        return F.cross_entropy(self.lm_head(x).flatten(0, 1), targets.flatten())


def tiny_model(dtype) -> TinyLM:
    torch.manual_seed(0)
    return TinyLM().to(dtype)


def make_batches(n: int) -> list:
    g = torch.Generator().manual_seed(1)
    out = []
    for k in range(n):
        tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
        out.append((tokens[:, :-1], tokens[:, 1:], {"batch": k}))
    return out


class CountingLoader:
    """An iterator over fixed batches that counts how many were taken."""

    def __init__(self, batches):
        self.batches, self.taken = batches, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.taken >= len(self.batches):
            raise StopIteration
        self.taken += 1
        return self.batches[self.taken - 1]


class CountingAutocast:
    def __init__(self):
        self.entered = 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return False


def grads_of(model) -> list:
    return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in model.parameters()]




# ---------------------------------------------------------------------------------------------------------------
# accumulate_gradients

def run_accumulate(fn, dtype) -> dict:
    """Call an accumulate_gradients on the tiny model; what it returned, took and left in .grad."""
    model = tiny_model(dtype)
    batches = make_batches(ACCUM + 2)
    loader, autocast = CountingLoader(batches[1:]), CountingAutocast()
    returned = fn(model, loader, batches[0], ACCUM, autocast)
    if not (isinstance(returned, (tuple, list)) and len(returned) == 3):
        return {"malformed": f"returns {type(returned).__name__} {str(returned)[:60]}; the loop expects three "
                             "things: (mean loss, the loader state after the last batch, the next batch)"}
    loss, consumed, next_batch = returned
    next_state = next_batch[2] if isinstance(next_batch, tuple) else next_batch
    return {"loss": loss, "consumed": consumed, "next": next_state, "taken": loader.taken,
            "autocast": autocast.entered, "grads": grads_of(model)}


def grads_over(batch_indices, scale: float) -> list:
    """The gradient of scale x (sum of the losses of these batches), in float64: a well-known wrong answer."""
    model = tiny_model(torch.float64)
    batches = make_batches(ACCUM + 2)
    for i in batch_indices:
        x, y, _ = batches[i]
        (model(x, y) * scale).backward()
    return grads_of(model)


def _close(got: list, want: list) -> bool:
    return max_diff_all(got, want) <= TOL[torch.float64]


def _accumulate_mistake(got: dict, want: dict) -> str | None:
    """What is wrong, read from a float64 run: the batches taken, the gradients, the loss, the states."""
    if got["taken"] != want["taken"]:
        return (f"took {got['taken']} batches from the loader for {ACCUM} micro-steps; the reference takes "
                f"{want['taken']}: the first comes prefetched, and each micro-step fetches the one after it")
    if not torch.is_tensor(got["loss"]):
        kind = type(got["loss"]).__name__
        return f"returns the loss as {kind}; the loop expects a tensor (it averages it over ranks)"
    if got["autocast"] == 0:
        return "the forward pass does not run under autocast_ctx (bf16 on GPUs)"
    grads = got["grads"]
    if not _close(grads, want["grads"]):
        if _close(grads, grads_over(range(ACCUM), 1.0)):
            return f"gradients are {ACCUM}x the reference's: divide each micro-batch's loss by accum_steps first"
        if _close(grads, grads_over([0], 1.0)) or _close(grads, grads_over([0] * ACCUM, 1 / ACCUM)) \
                or _close(grads, grads_over([0] * ACCUM, 1.0)):
            return "every micro-step trains on the first batch: move on to the batch fetched from the loader"
        if _close(grads, grads_over([ACCUM - 1], 1 / ACCUM)) or _close(grads, grads_over([ACCUM - 1], 1.0)):
            return "only the last micro-batch's gradient is left: gradients must add up (no zero_grad in the loop)"
        return None
    loss, ref_loss = float(got["loss"]), float(want["loss"])
    if abs(loss - ref_loss) > TOL[torch.float32]:  # the reference sums the loss in float32 (its default dtype)
        if abs(loss - ACCUM * ref_loss) <= ACCUM * TOL[torch.float32]:
            return "the returned loss is the sum over micro-batches: return their mean"
        return f"the returned loss is {loss:.6f}, the reference's (the mean over micro-batches) {ref_loss:.6f}"
    if got["consumed"] != want["consumed"]:
        if got["consumed"] == want["next"]:
            return ("returns the state of the prefetched next batch, not of the last batch trained on: a resumed "
                    "run would skip a batch")
        return f"returns the loader state {got['consumed']!r}, the reference {want['consumed']!r}"
    if got["next"] != want["next"]:
        return f"returns {got['next']!r} as the next batch's state, the reference {want['next']!r}"
    return None


def _accumulate_diff(got: dict, want: dict) -> float:
    try:
        loss_diff = abs(float(got["loss"]) - float(want["loss"]))
    except (TypeError, ValueError):
        loss_diff = float("inf")
    return max(max_diff_all(got["grads"], want["grads"]), loss_diff)


def probe_accumulate(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["accumulate_gradients"]
    runs = {}
    for dtype in (torch.float32, torch.float64):
        want = run_accumulate(reference.accumulate_gradients, dtype)
        got, failed = attempt(ex, learner, run_accumulate, learner.accumulate_gradients, dtype)
        if failed:
            return failed
        runs[dtype] = got, want
        if "malformed" in got:
            return mismatch(ex, got["malformed"])
    diffs = {dtype: _accumulate_diff(got, want) for dtype, (got, want) in runs.items()}
    why = _accumulate_mistake(*runs[torch.float64])
    if why:
        return mismatch(ex, why, diffs[torch.float64])
    return numeric(ex, diffs[torch.float32], TOL[torch.float32],
                   f"{ACCUM} micro-batches: the gradient of the mean loss, the mean loss, the loader states",
                   "the gradients differ from the reference's", diffs[torch.float64])


# ---------------------------------------------------------------------------------------------------------------
# optimizer_step

# one call per row: (lrm, momentum, grad_clip, loss scale); the scale makes the gradient norm far above the clip
CALLS = ((0.3, 0.9, 0.5, 20.0), (0.7, 0.88, 0.0, 20.0))
ADAMW_LRS, MUON_LR = (0.05, 0.004), 0.02


def _seen(opt) -> dict:
    """What an optimizer sees when it steps: its groups' lr and momentum, and the gradients of its parameters."""
    return {"lr": [g["lr"] for g in opt.param_groups], "momentum": [g.get("momentum") for g in opt.param_groups],
            "grads": [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                      for g in opt.param_groups for p in g["params"]]}


class RecordingOptimizer:
    """A stand-in for AdamW or Muon: param groups as torch.optim keeps them (lr, initial_lr, momentum...), and a
    step that records what it sees, then moves each parameter by -lr x grad. Plain SGD makes the weights after
    the step show the lr and the clipping directly (Adam and Muon would normalise a clipped gradient's scale
    away), and it leaves torch.optim (whose first optimizer imports torch._dynamo, seconds) out of the check."""

    def __init__(self, groups: list, **defaults):
        self.param_groups = [dict(defaults, **group) for group in groups]
        for group in self.param_groups:
            group["initial_lr"] = group["lr"]
        self.seen = []

    @torch.no_grad()
    def step(self, closure=None):
        self.seen.append(_seen(self))
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])

    def zero_grad(self, set_to_none: bool = True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()


def make_optimizers(model: TinyLM):
    """[adamw, muon] as GPT.setup_optimizers makes them: two AdamW groups with their own lr, Muon on the matrix."""
    adamw = RecordingOptimizer([{"params": [model.wte.weight], "lr": ADAMW_LRS[0]},
                                {"params": [model.lm_head.weight], "lr": ADAMW_LRS[1]}],
                               betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0)
    muon = RecordingOptimizer([{"params": [model.hidden.weight], "lr": MUON_LR}], momentum=0.95, nesterov=True)
    return adamw, muon


def run_optimizer_step(fn, dtype) -> list[dict]:
    """Two calls of an optimizer_step on the tiny model (clip on, then off): what each optimizer saw, per call."""
    model = tiny_model(dtype)
    adamw, muon = make_optimizers(model)
    calls = []
    for (x, y, _), (lrm, momentum, clip, scale) in zip(make_batches(len(CALLS)), CALLS):
        (model(x, y) * scale).backward()
        raw = grads_of(model)
        before = {"adamw": len(adamw.seen), "muon": len(muon.seen)}
        lr_before = [g["lr"] for g in adamw.param_groups] + [g["lr"] for g in muon.param_groups]
        fn(model, [adamw, muon], muon, lrm, momentum, clip)
        calls.append({
            "raw": raw, "lr_before": lr_before, "steps": {"adamw": adamw.seen[before["adamw"]:],
                                                          "muon": muon.seen[before["muon"]:]},
            "after": {"adamw": _seen(adamw), "muon": _seen(muon)},
            "cleared": all(p.grad is None or not p.grad.any() for p in model.parameters()),
            "params": [p.detach().clone() for p in model.parameters()],
        })
    return calls


def _per_parameter_clip(raw: list, clip: float) -> list:
    return [g * min(1.0, clip / (g.norm().item() + 1e-6)) for g in raw]


def _lr_mistake(got: dict, want: dict, lrm: float) -> str | None:
    seen = got["steps"]["adamw"][0]["lr"] + got["steps"]["muon"][0]["lr"]
    right = want["steps"]["adamw"][0]["lr"] + want["steps"]["muon"][0]["lr"]
    if all(abs(a - b) <= EXACT for a, b in zip(seen, right)):
        return None
    after = got["after"]["adamw"]["lr"] + got["after"]["muon"]["lr"]
    if all(abs(a - b) <= EXACT for a, b in zip(after, right)):
        return "the learning rates are set after the optimizers stepped: set them first"
    if all(abs(a - lrm) <= EXACT for a in seen):
        return "every group's lr is set to the multiplier itself: lr = group['initial_lr'] x lrm"
    if all(abs(a - b * lrm) <= EXACT for a, b in zip(seen, got["lr_before"])):
        return "the lr compounds from step to step: compute it from group['initial_lr'], not the current lr"
    if seen == got["lr_before"]:
        return "the learning rates are not set: each group's lr is initial_lr x lrm"
    return f"the optimizers stepped with lr {seen}, the reference with {right}"


def _momentum_mistake(got: dict, momentum: float) -> str | None:
    seen = got["steps"]["muon"][0]["momentum"]
    if all(m == momentum for m in seen):
        return None
    if all(m == momentum for m in got["after"]["muon"]["momentum"]):
        return "Muon's momentum is set after it stepped: set it first"
    return f"Muon stepped with momentum {seen}, not {momentum}: set it on every group of muon_optimizer"


def _grads_mistake(got: dict, want: dict, clip: float) -> str | None:
    seen = got["steps"]["adamw"][0]["grads"] + got["steps"]["muon"][0]["grads"]
    right = want["steps"]["adamw"][0]["grads"] + want["steps"]["muon"][0]["grads"]
    if _close(seen, right):
        return None
    raw = got["raw"][:1] + got["raw"][2:] + got["raw"][1:2]  # model order (wte, hidden, lm_head) -> AdamW, Muon
    if clip == 0:
        return "clips although grad_clip is 0: 0 means no clipping"
    if _close(seen, raw):
        return ("the optimizers stepped with unclipped gradients: clip the gradient norm before the step "
                "(clipping after it, or not at all, changes nothing)")
    if _close(seen, _per_parameter_clip(raw, clip)):
        return "each parameter's gradient is clipped on its own: clip the norm of all of them together"
    return None


def _step_mistake(got: list, want: list) -> str | None:
    for k, ((lrm, momentum, clip, _), g, w) in enumerate(zip(CALLS, got, want)):
        call = f"call {k + 1} (lrm {lrm}, momentum {momentum}, grad_clip {clip})"
        counts = {name: len(steps) for name, steps in g["steps"].items()}
        if counts != {"adamw": 1, "muon": 1}:
            return f"{call}: the optimizers stepped {counts} times: step each optimizer once"
        why = _lr_mistake(g, w, lrm) or _momentum_mistake(g, momentum) or _grads_mistake(g, w, clip)
        if why:
            return f"{call}: {why}"
        if not g["cleared"]:
            return f"{call}: the gradients are not cleared after the step: the next step would add onto them"
    return None


def probe_optimizer_step(learner: ModuleType, reference: ModuleType) -> Component:
    ex = EX["optimizer_step"]
    runs = {}
    for dtype in (torch.float32, torch.float64):
        want = run_optimizer_step(reference.optimizer_step, dtype)
        got, failed = attempt(ex, learner, run_optimizer_step, learner.optimizer_step, dtype)
        if failed:
            return failed
        runs[dtype] = got, want
    got64, want64 = runs[torch.float64]
    why = _step_mistake(got64, want64)
    diffs = {dtype: max(max_diff_all(g["params"], w["params"]) for g, w in zip(*pair))
             for dtype, pair in runs.items()}
    if why:
        return mismatch(ex, why, diffs[torch.float64])
    return numeric(ex, diffs[torch.float32], TOL[torch.float32],
                   "clipped (then not), lr and momentum set, each optimizer stepped once, gradients cleared",
                   "the weights after the step differ from the reference's", diffs[torch.float64])


# ---------------------------------------------------------------------------------------------------------------

def check(learner: ModuleType, reference: ModuleType) -> list[Component]:
    """One row per exercise, in the order the learner writes them. The tensors are tiny: one thread runs them
    faster than several contending for the cores (measured 0.1 s against 2.5 s on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [probe_lr_multiplier(learner, reference), probe_muon_momentum(learner, reference),
                probe_accumulate(learner, reference), probe_optimizer_step(learner, reference)]
    finally:
        torch.set_num_threads(threads)

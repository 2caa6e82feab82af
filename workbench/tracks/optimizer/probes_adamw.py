"""The checks of learner_adamw.py against nanochat/adamw.py (and torch.optim.AdamW), on the same inputs.

`adamw_step` runs three updates of one tensor in float32 and, when that differs, in float64. A mismatch is named
when the learner's numbers match a known mistake, simulated here: no bias correction (or only on one moment),
weight decay added to the gradient (L2) instead of decoupled, decay not scaled by lr, eps inside the square root,
the betas swapped, no weight decay at all. `AdamW.step` runs the learner's optimizer (with the reference's
adamw_step in it) over two parameter groups and a parameter without a gradient, against torch.optim.AdamW.
"""

import torch

from workbench.check.probe import swapped_globals
from workbench.tracks.optimizer.spec import ADAMW
from workbench.tracks.outcome import FLOAT64_TOL, attempt, max_abs_diff, max_diff_all, mismatch, numeric, passed

STEP_FN = ADAMW.exercise("adamw_step")
OPT_STEP = ADAMW.exercise("AdamW.step")
HYPER = dict(lr=0.01, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
STEPS = 3
TOL = 1e-6


def check(learner, reference) -> list:
    return [check_adamw_step(learner, reference), check_optimizer_step(learner, reference)]


# ---- adamw_step ------------------------------------------------------------------------------------------------

def step_inputs(dtype):
    g = torch.Generator().manual_seed(3)
    param = torch.randn(16, 24, generator=g, dtype=dtype)
    grads = [torch.randn(16, 24, generator=g, dtype=dtype) * 0.1 for _ in range(STEPS)]
    return param, grads


def run_steps(fn, dtype) -> list:
    """[param, exp_avg, exp_avg_sq] after each of STEPS calls of `fn` (an adamw_step)."""
    param, grads = step_inputs(dtype)
    exp_avg, exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
    out = []
    for step, grad in enumerate(grads, 1):
        fn(param, grad.clone(), exp_avg, exp_avg_sq, step, **HYPER)
        out.append([param.clone(), exp_avg.clone(), exp_avg_sq.clone()])
    return out


def simulate(dtype, correct1=True, correct2=True, decoupled=True, decay_lr=True, eps_inside=False,
             swap_betas=False, decay=True) -> list:
    """Params after each step of an Adam done one way or another (the mistakes the check names)."""
    param, grads = step_inputs(dtype)
    m, v = torch.zeros_like(param), torch.zeros_like(param)
    lr, eps, wd = HYPER["lr"], HYPER["eps"], HYPER["weight_decay"] if decay else 0.0
    b1, b2 = (HYPER["beta2"], HYPER["beta1"]) if swap_betas else (HYPER["beta1"], HYPER["beta2"])
    out = []
    for t, g in enumerate(grads, 1):
        if decoupled:
            param = param * (1 - (lr * wd if decay_lr else wd))
        else:
            g = g + wd * param
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t) if correct1 else m
        v_hat = v / (1 - b2 ** t) if correct2 else v
        denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
        param = param - lr * m_hat / denom
        out.append(param.clone())
    return out


STEP_MISTAKES = (
    (dict(correct1=False, correct2=False), "no bias correction: divide the moments by 1 - beta1**step and "
                                           "1 - beta2**step (both start at zero, so they are too small early on)"),
    (dict(correct1=False), "the first moment (exp_avg) is not bias-corrected: divide it by 1 - beta1**step"),
    (dict(correct2=False), "the second moment (exp_avg_sq) is not bias-corrected: divide it by 1 - beta2**step"),
    (dict(decoupled=False), "weight decay added to the gradient (L2, Adam's way) instead of decoupled: AdamW shrinks "
                            "the weights directly, param *= 1 - lr * weight_decay, and the moments never see it"),
    (dict(decay_lr=False), "the weight decay is not scaled by the learning rate: param *= 1 - lr * weight_decay"),
    (dict(eps_inside=True), "eps is inside the square root: the denominator is sqrt(v̂) + eps"),
    (dict(swap_betas=True), "beta1 and beta2 are swapped: beta1 averages the gradient, beta2 its square"),
    (dict(decay=False), "no weight decay at all: AdamW shrinks the weights by 1 - lr * weight_decay every step"),
)


def named_step_mistake(got64: list, want64: list) -> str:
    params = [snap[0] for snap in got64]
    for changes, text in STEP_MISTAKES:
        if max_diff_all(params, simulate(torch.float64, **changes)) <= FLOAT64_TOL:
            return text
    names = ("param", "exp_avg", "exp_avg_sq")
    for step, (g, w) in enumerate(zip(got64, want64), 1):
        for name, a, b in zip(names, g, w):
            if max_abs_diff(a, b) > FLOAT64_TOL:
                broken = " and holds NaN or inf" if not a.isfinite().all() else ""
                return f"{name} differs from the reference's after step {step} of {STEPS}{broken}"
    return "differs from the reference"


def check_adamw_step(learner, reference):
    got, bad = attempt(STEP_FN, learner, run_steps, learner.adamw_step, torch.float32)
    if bad:
        return bad
    diff = max(max_diff_all(g, w) for g, w in zip(got, run_steps(reference.adamw_step, torch.float32)))
    if diff <= TOL:
        return passed(STEP_FN, f"{STEPS} updates match the reference (param and both moments)", diff)
    got64, bad = attempt(STEP_FN, learner, run_steps, learner.adamw_step, torch.float64)
    if bad:
        return bad
    want64 = run_steps(reference.adamw_step, torch.float64)
    diff64 = max(max_diff_all(g, w) for g, w in zip(got64, want64))
    return numeric(STEP_FN, diff, TOL, "matches the reference", named_step_mistake(got64, want64), diff64)


# ---- AdamW.step ------------------------------------------------------------------------------------------------

def run_optimizer(cls, dtype=torch.float32) -> list:
    """Params after each of STEPS steps of `cls` over two groups (different lr and decay) and a parameter
    without a gradient."""
    g = torch.Generator().manual_seed(4)
    params = [torch.randn(8, 12, generator=g, dtype=dtype).requires_grad_(),
              torch.randn(12, generator=g, dtype=dtype).requires_grad_(),
              torch.ones(4, dtype=dtype, requires_grad=True)]
    groups = [dict(params=params[:1]), dict(params=params[1:], lr=0.05, weight_decay=0.0)]
    opt = cls(groups, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    out = []
    for _ in range(STEPS):
        params[0].grad = torch.randn(8, 12, generator=g, dtype=dtype)
        params[1].grad = torch.randn(12, generator=g, dtype=dtype)
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def check_optimizer_step(learner, reference):
    with swapped_globals(learner, adamw_step=reference.adamw_step):
        got, bad = attempt(OPT_STEP, learner, run_optimizer, learner.AdamW)
    if bad:
        if "NoneType" in bad["detail"]:
            bad["detail"] += " — a parameter whose .grad is None must be skipped"
        return bad
    want = run_optimizer(torch.optim.AdamW)
    diff = max(max_diff_all(g, w) for g, w in zip(got, want))
    if diff <= TOL:
        return passed(OPT_STEP, f"{STEPS} steps over two groups match torch.optim.AdamW", diff)
    if max_abs_diff(got[-1][-1], torch.ones(4)) > 0:
        return mismatch(OPT_STEP, "a parameter without a gradient was changed: skip parameters whose .grad is None",
                        diff)
    if max_diff_all(got[0], want[0]) <= TOL:
        return mismatch(OPT_STEP, "the first step matches but later ones do not: keep each parameter's state "
                                  "(step, exp_avg, exp_avg_sq) in self.state[p] and count its step up by one "
                                  "every time", diff)
    if max_abs_diff(got[0][1], want[0][1]) > TOL >= max_abs_diff(got[0][0], want[0][0]):
        return mismatch(OPT_STEP, "the second group's lr/weight_decay are not used: read them from the "
                                  "parameter's own group", diff)
    return mismatch(OPT_STEP, f"the parameters differ from torch.optim.AdamW's after step 1 (max |Δ| "
                              f"{diff:.3g})", diff)

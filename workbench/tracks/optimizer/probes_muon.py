"""The checks of learner_muon.py against nanochat/muon.py: each function on its own, on the same inputs.

Each function is run with the reference's versions of the functions it calls (so a bug shows where it is), in
float32 as training runs it and, when that differs, again in float64 to tell wrong math from rounding. A
mismatch is named when the learner's numbers match a known mistake, simulated here from the reference's parts:
no Nesterov look-ahead, the momentum average weighted backwards, no update_scale, a buffer that is not kept, the
wrong sign, other Newton–Schulz coefficients, a tall matrix handed back transposed, a result that depends on G's
scale.
(Momentum as a running sum, buf = momentum·buf + grad with the matching look-ahead, is no mistake here: it is the
average times 1/(1 - momentum), and the orthogonalisation divides any scale out.)
"""

import torch

from workbench.check.probe import swapped_globals
from workbench.tracks.optimizer.spec import MUON
from workbench.tracks.outcome import FLOAT64_TOL, attempt, max_abs_diff, max_diff_all, mismatch, numeric, passed

NS = MUON.exercise("zeropower_via_newtonschulz5")
SCALE = MUON.exercise("update_scale")
UPDATE = MUON.exercise("muon_update")
STEP = MUON.exercise("Muon.step")
NS_TOL = 2e-4  # five float32 iterations on unit-scale matrices
UPDATE_TOL = 1e-5
GROUP = dict(lr=0.02, momentum=0.95, nesterov=True, ns_steps=5)
SHAPES = ((16, 32), (16, 32), (40, 12))  # two wide matrices batched together, one tall one
STEPS = 3


def check(learner, reference) -> list:
    return [check_newtonschulz(learner, reference), check_update_scale(learner, reference),
            check_muon_update(learner, reference), check_step(learner, reference)]


# ---- zeropower_via_newtonschulz5 -------------------------------------------------------------------------------

def ns_cases() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"a wide matrix": (torch.randn(24, 48, generator=g), 5),
            "a tall matrix": (torch.randn(48, 20, generator=g), 5),
            "a batch of matrices": (torch.randn(3, 16, 40, generator=g), 5),
            "steps=2": (torch.randn(20, 32, generator=g), 2)}


def check_newtonschulz(learner, reference):
    fn = learner.zeropower_via_newtonschulz5
    for case, (G, steps) in ns_cases().items():
        got, bad = attempt(NS, learner, fn, G.clone(), steps=steps, dtype=torch.float32)
        if bad:
            if case == "a batch of matrices":
                bad["detail"] += " — on a batch (3, m, n): transpose the last two dimensions with .mT, not .T"
            return bad
        want = reference.zeropower_via_newtonschulz5(G.clone(), steps=steps, dtype=torch.float32)
        diff = max_abs_diff(got, want)
        if diff <= NS_TOL:
            continue
        got64, bad = attempt(NS, learner, fn, G.double(), steps=steps, dtype=torch.float64)
        diff64 = max_abs_diff(got64, reference.zeropower_via_newtonschulz5(G.double(), steps=steps,
                                                                           dtype=torch.float64)) if not bad else None
        why = f"on {case}: {ns_mistake(learner, reference, case, G, steps, got)}"
        verdict = numeric(NS, diff, NS_TOL, "", why, diff64)
        if verdict["status"] != "pass":
            return verdict
    G = torch.randn(8, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got, bad = attempt(NS, learner, fn, G, steps=5, dtype=torch.float32)
    if bad:
        return bad
    if not isinstance(got, torch.Tensor) or got.dtype != torch.float64:
        what = getattr(got, "dtype", type(got).__name__)
        return mismatch(NS, f"returns {what} for a float64 G iterated in float32: hand the result back in G's "
                            f"dtype (X.to(G.dtype))", None)
    return passed(NS, "matches the reference on wide, tall and batched matrices, 2 and 5 steps, in G's dtype")


def ns_mistake(learner, reference, case: str, G, steps: int, got) -> str:
    """Why the learner's Newton–Schulz differs, as precisely as the numbers allow."""
    want = reference.zeropower_via_newtonschulz5(G, steps=steps, dtype=torch.float32)
    if not isinstance(got, torch.Tensor):
        return f"returns {type(got).__name__}, not a tensor"
    if tuple(got.shape) != tuple(want.shape):
        if tuple(got.shape) == tuple(want.mT.shape):
            return (f"returns shape {tuple(got.shape)}, the transpose: a tall matrix must be transposed back after "
                    f"the iteration")
        return f"returns shape {tuple(got.shape)} instead of {tuple(want.shape)}"
    if case == "steps=2":
        return "with steps=2 it differs while 5 steps match: the loop must run `steps` times, not a fixed 5"
    try:
        scaled = learner.zeropower_via_newtonschulz5(G * 100, steps=steps, dtype=torch.float32)
    except Exception:  # noqa: BLE001 - it ran on G itself; a failure here only refines the message
        scaled = got
    if max_abs_diff(scaled, got) > NS_TOL:
        return ("the result depends on the scale of G: divide X by its Frobenius norm (+1e-7) before iterating, so "
                "every singular value starts at most 1")
    coeffs = fitted_coefficients(learner.zeropower_via_newtonschulz5)
    if coeffs is not None and max(abs(x - y) for x, y in zip(coeffs, reference.NS_COEFFS)) > 1e-3:
        shown = ", ".join(f"{x:.4f}" for x in coeffs)
        return (f"Newton–Schulz coefficients: one of your steps maps σ to aσ + bσ³ + cσ⁵ with (a, b, c) ≈ "
                f"({shown}); "
                f"the reference uses NS_COEFFS = {reference.NS_COEFFS}")
    return "does not orthogonalise like the reference (compare one iteration: X ← aX + (bA + cA²)X with A = X Xᵀ)"


def fitted_coefficients(fn):
    """(a, b, c) of one iteration of `fn`, read off a diagonal matrix (each diagonal entry goes through the
    polynomial on its own); None when the numbers do not fit a quintic."""
    s = torch.tensor([0.15, 0.3, 0.45, 0.6, 0.75], dtype=torch.float64)
    x = s / (s.norm() + 1e-7)
    try:
        y = torch.diagonal(fn(torch.diag(s), steps=1, dtype=torch.float64)).double()
    except Exception:  # noqa: BLE001 - only a refinement of a message; the row says the rest
        return None
    basis = torch.stack([x, x ** 3, x ** 5], dim=1)
    solution = torch.linalg.lstsq(basis, y.unsqueeze(1)).solution.squeeze(1)
    if (basis @ solution - y).abs().max() > 1e-6:
        return None
    return tuple(solution.tolist())


# ---- update_scale ----------------------------------------------------------------------------------------------

def check_update_scale(learner, reference):
    for shape in (torch.Size([64, 16]), torch.Size([16, 64]), torch.Size([32, 32]), torch.Size([3, 48, 12])):
        got, bad = attempt(SCALE, learner, learner.update_scale, shape)
        if bad:
            return bad
        want = reference.update_scale(shape)
        try:
            diff = abs(float(got) - want)
        except (TypeError, ValueError):
            return mismatch(SCALE, f"returns {type(got).__name__}, not a number", None)
        if diff > 1e-9:
            rows, cols = shape[-2], shape[-1]
            named = {max(1, cols / rows) ** 0.5: "the ratio is upside down: tall matrices (rows > cols) get the "
                                                 "larger step",
                     max(1, rows / cols): "the square root is missing",
                     (rows / cols) ** 0.5: "wide matrices must not get a step below 1: take max(1, rows / cols)"}
            why = next((text for value, text in named.items() if abs(float(got) - value) < 1e-9),
                       "differs from sqrt(max(1, rows / cols))")
            return mismatch(SCALE, f"for shape {tuple(shape)}: {float(got):.4g} instead of {want:.4g}: {why}", diff)
    return passed(SCALE, "sqrt(max(1, rows/cols)) for tall, wide, square and batched shapes", 0.0)


# ---- muon_update -----------------------------------------------------------------------------------------------

def update_inputs(dtype):
    g = torch.Generator().manual_seed(2)
    params = [torch.randn(*s, generator=g, dtype=dtype) for s in SHAPES]
    grads = [[torch.randn(*s, generator=g, dtype=dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def run_update(fn, dtype, group=GROUP):
    """Params after each of STEPS calls of `fn` (a muon_update), from the same start and gradients."""
    params, grads = update_inputs(dtype)
    states = [{} for _ in params]
    out = []
    for step_grads in grads:
        fn(params, step_grads, states, dict(group), dtype, False)
        out.append([p.clone() for p in params])
    return out


def simulate(reference, dtype, nesterov=True, backwards=False, scaled=True, keep=True, sign=-1.0, orthogonal=True):
    """The reference's muon_update with one thing done differently (the mistakes the check names)."""
    params, grads = update_inputs(dtype)
    bufs = [torch.zeros_like(p) for p in params]
    out, m = [], GROUP["momentum"]
    for step_grads in grads:
        if not keep:
            bufs = [torch.zeros_like(p) for p in params]
        for p, g, buf in zip(params, step_grads, bufs):
            buf.lerp_(g, m if backwards else 1 - m)
            d = g.lerp(buf, m) if nesterov else buf
            u = reference.zeropower_via_newtonschulz5(d, steps=GROUP["ns_steps"], dtype=dtype) if orthogonal else d
            p.add_(u, alpha=sign * GROUP["lr"] * (reference.update_scale(p.shape) if scaled else 1.0))
        out.append([p.clone() for p in params])
    return out


UPDATE_MISTAKES = (
    (dict(nesterov=False), "your Muon skips the Nesterov look-ahead: with nesterov=True the direction is "
                           "lerp(grad, buf, momentum), not the buffer itself"),
    (dict(backwards=True), "the momentum buffer's average is weighted backwards: buf.lerp_(grad, 1 - momentum) keeps "
                           "momentum (95%) of the old buffer and takes 5% of the new gradient"),
    (dict(scaled=False), "the step is not multiplied by update_scale(shape): tall matrices move too little"),
    (dict(keep=False), "the momentum buffer starts from zero every step: keep it in state['momentum_buffer']"),
    (dict(sign=1.0), "the update is added: a step goes against the direction, by -lr"),
    (dict(orthogonal=False), "the direction is not orthogonalised with zeropower_via_newtonschulz5"),
)


def check_muon_update(learner, reference):
    parts = dict(zeropower_via_newtonschulz5=reference.zeropower_via_newtonschulz5,
                 update_scale=reference.update_scale, compiled_newtonschulz5=reference.compiled_newtonschulz5)
    with swapped_globals(learner, **parts):
        got, bad = attempt(UPDATE, learner, run_update, learner.muon_update, torch.float32)
        if bad:
            return bad
        diff = max(max_diff_all(g, w) for g, w in zip(got, run_update(reference.muon_update, torch.float32)))
        if diff <= UPDATE_TOL:
            return passed(UPDATE, f"{STEPS} steps on matrices of two shapes match the reference", diff)
        got64, bad = attempt(UPDATE, learner, run_update, learner.muon_update, torch.float64)
    if bad:
        return bad
    want64 = run_update(reference.muon_update, torch.float64)
    diff64 = max(max_diff_all(g, w) for g, w in zip(got64, want64))
    first = next((i for i, (g, w) in enumerate(zip(got64, want64)) if max_diff_all(g, w) > FLOAT64_TOL), 0)
    if not all(p.isfinite().all() for p in got64[first]):
        return mismatch(UPDATE, f"the parameters hold NaN or inf after step {first + 1} of {STEPS}", diff)
    why = next((text for changes, text in UPDATE_MISTAKES
                if max(max_diff_all(g, w) for g, w in zip(got64, simulate(reference, torch.float64, **changes)))
                <= FLOAT64_TOL), f"the parameters differ from the reference's from step {first + 1} of {STEPS}")
    return numeric(UPDATE, diff, UPDATE_TOL, "matches the reference", why, diff64)


# ---- Muon.step -------------------------------------------------------------------------------------------------

def run_optimizer(cls, dtype=torch.float32):
    """Params after two steps of `cls` over two wide matrices, a tall one and one without a gradient."""
    params, grads = update_inputs(dtype)
    params = [p.requires_grad_() for p in params] + [torch.ones(8, 8, dtype=dtype, requires_grad=True)]
    opt = cls(params, lr=0.02, momentum=0.95)
    opt.ns_dtype, opt.ns_compile = dtype, False
    out = []
    for step_grads in grads[:2]:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def check_step(learner, reference):
    parts = dict(muon_update=reference.muon_update, zeropower_via_newtonschulz5=reference.zeropower_via_newtonschulz5,
                 update_scale=reference.update_scale, compiled_newtonschulz5=reference.compiled_newtonschulz5)
    with swapped_globals(learner, **parts):
        got, bad = attempt(STEP, learner, run_optimizer, learner.Muon)
    if bad:
        if "NoneType" in bad["detail"]:
            bad["detail"] += " — a parameter whose .grad is None must be skipped"
        return bad
    diff = max(max_diff_all(g, w) for g, w in zip(got, run_optimizer(reference.Muon)))
    if diff <= UPDATE_TOL:
        return passed(STEP, "two steps over every group match the reference's Muon", diff)
    if max_abs_diff(got[-1][-1], torch.ones(8, 8)) > 0:
        return mismatch(STEP, "a parameter without a gradient was changed: skip parameters whose .grad is None", diff)
    return mismatch(STEP, "the parameters after two steps differ from the reference's Muon: does every group's "
                          "parameters with a gradient go through the update once per step?", diff)

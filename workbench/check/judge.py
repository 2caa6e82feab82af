"""Turning what the learner's code produced into the check result: one row per component, the next TODO, the
error, shapes, losses.

Runs in the warm worker, which never runs learner code: the forked check process sends events and tensors
(workbench/check/child.py), and everything that decides pass or fail happens here, against the reference outputs
the worker computed itself (workbench/check/reference.py). A numeric mismatch is re-judged in float64 to
tell wrong math from float rounding, and compared with common mistakes (workbench/check/mistakes.py) to name it.
"""

import copy
import math
import os
import stat
import time
from dataclasses import dataclass

import torch

from nanochat import gpt as ref_gpt
from nanochat.fsutil import FileRefused
from workbench.check import mistakes, verify
from workbench.check.child import CUSTOM_LRS, LOW_PRECISION, SAMPLED_TOKENS, SAMPLING, module_float64, to_float64
from workbench.check.reference import (EXPERIMENT_LR, EXPERIMENT_T, GEN_TOKENS, ISOLATED_LAYER, KV_PREFIX, LOGITS_T,
                                       reference_curve, shared_adamw)
from workbench.check.result import (CheckError, CheckResult, ExperimentRun, NumericVerdict, Outcome, Stage, Status,
                                    is_accepted, is_failing, lead_component, stage_index)
from workbench.course.phases import LESSON_FOR, phase_of

FN_TOL = 1e-5  # norm, apply_rotary_emb (fp32)
MODULE_TOL = 1e-4  # attention, MLP, block, logits, loss
STD_TOL = 0.05  # init std, relative
MAX_TENSOR_BYTES = 1 << 30  # a tensor file of a check is tens of megabytes
NOISE_RATIO = 0.01  # float64 difference at most this fraction of the fp32 one: rounding, not math
CONTRACT_ERROR = "_ContractError"  # the child's exception for a broken contract: its message is the whole sentence

# (qualname, phase, what the row checks), in data-flow order: the report leads with the first that fails
ROWS = (
    ("GPT.__init__", 1, "config fields, wte / lm_head, the list of blocks, rotary buffers"),
    ("GPT._precompute_rotary_embeddings", 1, "rotary cos/sin tables against exact values"),
    ("Block.__init__", 1, "the block's submodules and parameter names"),
    ("CausalSelfAttention.__init__", 1, "q/k/v/proj shapes for MHA, GQA and MQA configs"),
    ("MLP.__init__", 1, "c_fc / c_proj shapes"),
    ("GPT.init_weights", 2, "zeros where the reference zeroes, the init std of every parameter"),
    ("GPT._init_weights", 2, "std of every Linear and Embedding after _init_weights"),
    ("norm", 3, "random inputs, fp32, max |Δ| ≤ 1e-5"),
    ("apply_rotary_emb", 3, "random inputs, fp32, max |Δ| ≤ 1e-5"),
    ("CausalSelfAttention.forward", 3, "reference weights and input, MHA + GQA + MQA, max |Δ| ≤ 1e-4"),
    ("MLP.forward", 3, "reference weights and input, max |Δ| ≤ 1e-4"),
    ("Block.forward", 3, "reference attention/MLP inside, max |Δ| ≤ 1e-4"),
    ("GPT.forward", 3, "logits, mean and per-token loss with reference blocks inside, max |Δ| ≤ 1e-4"),
    ("GPT (whole model)", 3, "all of your code on the reference's weights: logits and loss, max |Δ| ≤ 1e-4"),
    ("loss at init", 2, "loss of your freshly initialised model against ln(vocab)"),
    ("gradients", 3, "every gradient finite, non-zero where the reference's is, and equal to it"),
    ("GPT.setup_optimizers", 4, "which optimizer gets each parameter, learning rates, settings"),
    ("GPT.get_device", 4, "the device the parameters live on"),
    ("GPT.estimate_flops", 4, "FLOPs per token against the reference's formula"),
    ("training", 4, "the loss goes down while overfitting one batch"),
    ("GPT.generate", 5, "greedy tokens against the reference, top-k = 1, seeded sampling"),
    ("KV-cache decoding", 5, "nanochat's Engine (KV cache) against uncached decoding"),
)
DERIVED = {"loss at init": None, "gradients": "GPT (whole model)", "training": None}


class Verdict(Exception):
    """Raised by a row judge to end with a status: `raise Verdict(Status.TODO, detail)`."""

    def __init__(self, status: Status, detail: str, max_abs_diff=None, **extra):
        super().__init__(detail)
        self.status, self.detail, self.max_abs_diff, self.extra = status, detail, max_abs_diff, extra


class Mismatch(Verdict):
    """`raise Mismatch(detail, max_abs_diff)`: the learner's code runs but differs from the reference."""

    def __init__(self, detail: str, max_abs_diff=None, **extra):
        super().__init__(Status.MISMATCH, detail, max_abs_diff, **extra)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.dtype != b.dtype or not a.is_floating_point():
        a, b = a.double(), b.double()
    if not a.numel():
        return 0.0
    diff = float((a - b).abs().max())
    return diff if math.isfinite(diff) else math.inf


def rounding(dtype) -> float:
    """The rounding error a value in [-1, 1] may carry in `dtype` (e.g. a rotary table kept in bfloat16)."""
    return torch.finfo(dtype).eps if dtype in LOW_PRECISION else 0.0


def reference_on_tables(ref, dtype) -> dict:
    """The reference's answers on the LOGITS_T prefix with its rotary tables cast to `dtype`: logits, per-token
    losses, gradients, and the float64 re-run (tables kept in `dtype`, as the learner's float64 re-run keeps them)."""
    model = copy.deepcopy(ref.model)
    model.cos, model.sin = (t.to(dtype) for t in ref.rotary)
    idx, tgt = ref.inputs[:, :LOGITS_T], ref.targets[:, :LOGITS_T]
    model.zero_grad(set_to_none=True)
    model(idx, tgt).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        m64 = module_float64(model)
        return {"logits": model(idx), "loss_none": model(idx, tgt, loss_reduction="none").view(-1), "grads": grads,
                "logits@64": m64(idx), "loss@64": m64(idx, tgt)}


def _fmt(x: float) -> str:
    if x is None:
        return "?"
    if x == 0:
        return "0"
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.1e}"


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t) + ")"


class Judge:
    def __init__(self, ref, path: str, experiments=()):
        self.ref = ref
        self.path = path
        self.name = os.path.basename(path)
        self.experiments = list(experiments)  # methods the learner marked as experiments
        self.float_noise = False  # the row being judged passed only because the float64 re-run showed rounding
        self.followed = None  # the row being judged passed against the reference with the experiments in place
        self.notes: list[str] = []  # the row being judged: remarks that do not change its verdict (a dtype, ...)

    # ---- numeric comparison with the float64 re-run ----------------------------------------------------------

    def compare(self, what, out, expected, tol, out64=None, expected64=None, variants=None):
        """Return (max |Δ|, note) when `out` matches; raise a mismatch Verdict with a learner-readable reason."""
        if not isinstance(out, torch.Tensor):
            raise Verdict(Status.ERROR, f"{what} returned {type(out).__name__}, not a tensor")
        if tuple(out.shape) != tuple(expected.shape):
            raise Mismatch(f"{what} has shape {_shape(out.shape)}; the reference's is {_shape(expected.shape)}")
        if out.dtype != expected.dtype and out.is_floating_point():
            raise Mismatch(f"{what} comes out as {str(out.dtype)[6:]}; the reference returns "
                           f"{str(expected.dtype)[6:]}")
        d32 = max_abs_diff(out, expected)
        if d32 <= tol:
            return d32, None
        if math.isinf(d32):
            raise Mismatch(f"{what} contains NaN or inf", d32, verdict=NumericVerdict.WRONG_MATH)
        d64 = None
        e64 = expected64() if (out64 is not None and expected64 is not None) else None
        if e64 is not None and isinstance(out64, torch.Tensor) and tuple(out64.shape) == tuple(e64.shape):
            d64 = max_abs_diff(out64, e64)
            if d64 <= max(NOISE_RATIO * d32, 1e-12) and d64 <= tol:
                self.float_noise = True
                return d32, (f"fp32 max |Δ| {_fmt(d32)} is above {_fmt(tol)}, but in float64 it is {_fmt(d64)}: "
                             f"float rounding (e.g. sqrt vs rsqrt), not a bug")
        named = self.name_mistake(out, variants, tol) if variants is not None else None
        detail = f"mismatch in {what} — max |Δ| {_fmt(d32)}"
        if named:
            detail = f"{what}: looks like your code {named} — max |Δ| {_fmt(d32)}"
        detail += " (wrong math: the float64 re-run differs just as much)" if d64 is not None else ""
        raise Mismatch(detail, d32, verdict=NumericVerdict.WRONG_MATH, max_abs_diff_float64=d64)

    @staticmethod
    def name_mistake(out, variants, tol):
        try:
            with torch.no_grad():
                for description, variant in variants():
                    if tuple(variant.shape) == tuple(out.shape) and max_abs_diff(out, variant.to(out.dtype)) <= max(10 * tol, 1e-3 * float(variant.abs().max())):
                        return description
        except Exception:  # a variant that does not apply to these inputs
            return None
        return None

    def ref64(self, key, compute):
        cache = self.ref.cache64
        if key not in cache:
            with torch.no_grad():
                cache[key] = compute()
        return cache[key]

    # ---- rows ---------------------------------------------------------------------------------------------

    def row_gpt_init(self, obs, t):
        ref, d = self.ref, obs["data"]
        fields = d.get("config_fields")
        if fields is None:
            raise Mismatch("GPTConfig is not a dataclass; keep the reference's @dataclass GPTConfig")
        missing = [f for f in ref.config_fields if f not in fields]
        if missing:
            raise Mismatch(f"GPTConfig lacks the field(s) {', '.join(missing)}")
        changed = [f"{f} = {fields[f]!r} (reference {v!r})" for f, v in ref.config_fields.items() if fields.get(f) != v]
        if changed:
            raise Mismatch("GPTConfig defaults differ: " + "; ".join(changed))
        if not d.get("config_kept"):
            raise Mismatch("keep the config as self.config: the Engine, FLOPs and optimizer code read it")
        top = {n: tuple(s) for n, s in d["params"].items() if not n.startswith("transformer.h.")}
        ref_top = {n: s for n, s in ref.param_shapes.items() if not n.startswith("transformer.h.")}
        self._same_params("GPT", top, ref_top)
        if d.get("h_type") != "ModuleList":
            raise Mismatch(f"transformer.h should be an nn.ModuleList of blocks, got {d.get('h_type')}")
        if d.get("h_len") != ref.config_kwargs["n_layer"]:
            raise Mismatch(f"transformer.h holds {d.get('h_len')} blocks; config.n_layer is "
                           f"{ref.config_kwargs['n_layer']}")
        buffers = d.get("buffers", {})
        for name, shape in ref.buffer_shapes.items():
            if name not in buffers:
                raise Mismatch(f"no buffer named {name}: register the rotary table with "
                               f"self.register_buffer('{name}', ..., persistent=False)")
            if tuple(buffers[name]["shape"]) != tuple(shape):
                raise Mismatch(f"buffer {name} has shape {_shape(buffers[name]['shape'])}; the reference's "
                               f"is {_shape(shape)} (10 × sequence_len positions)")
            if buffers[name]["persistent"]:
                raise Mismatch(f"buffer {name} is saved in the state_dict; register it with "
                               f"persistent=False (it is recomputed, not loaded from checkpoints)")
        return "config, wte, lm_head, blocks and rotary buffers match", None

    def _same_params(self, owner, got, want):
        missing = [n for n in want if n not in got]
        extra = [n for n in got if n not in want]
        if missing:
            raise Mismatch(f"{owner} has no parameter {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if extra:
            hint = " (the reference has no biases)" if extra[0].endswith(".bias") else (
                " (the reference's norm has no learnable weights)" if "norm" in extra[0] or "ln" in extra[0] else "")
            raise Mismatch(f"{owner} has an extra parameter {extra[0]}{hint}")
        for n, s in want.items():
            if tuple(got[n]) != tuple(s):
                hint = " (nn.Linear(in, out) stores its weight as (out, in))" if tuple(got[n]) == tuple(s)[::-1] else ""
                raise Mismatch(f"{owner}: {n} has shape {_shape(got[n])}; the reference's is {_shape(s)}{hint}")

    def row_precompute(self, obs, t):
        ref = self.ref
        cos, sin = t.get("cos"), t.get("sin")
        exact_cos, exact_sin = ref.rotary_exact
        for name, got, want, exact in (("cos", cos, ref.rotary[0], exact_cos), ("sin", sin, ref.rotary[1], exact_sin)):
            if tuple(got.shape) != tuple(want.shape):
                raise Mismatch(f"{name} has shape {_shape(got.shape)}; the reference's is {_shape(want.shape)} "
                               f"= (1, seq_len, 1, head_dim/2), to broadcast over (B, T, H, D/2)")
            if not got.is_floating_point():
                raise Mismatch(f"{name} is {str(got.dtype)[6:]}; the tables hold cos/sin values, in a floating type")
        if cos.dtype != ref.rotary[0].dtype:
            self.notes.append(f"tables kept in {str(cos.dtype)[6:]} (nanochat's own code keeps them in bfloat16): "
                              f"judged in float64 against the exact values, within {str(cos.dtype)[6:]}'s rounding")
        worst = 0.0
        for name, got, want, exact in (("cos", cos, ref.rotary[0], exact_cos), ("sin", sin, ref.rotary[1], exact_sin)):
            err = max_abs_diff(got, exact)
            ref_err = max_abs_diff(want, exact)
            worst = max(worst, max_abs_diff(got, want))
            if err > max(FN_TOL, 4 * ref_err, rounding(got.dtype)):
                bad = (got.double() - exact).abs().reshape(got.size(1), -1)
                pos, ch = divmod(int(bad.argmax()), bad.size(1))
                hint = ""
                if max_abs_diff(got, exact_sin if name == "cos" else exact_cos) < max(1e-3, rounding(got.dtype)):
                    hint = ": cos and sin are swapped"
                raise Mismatch(f"{name} table is wrong{hint} — first big error at position {pos}, pair {ch}; "
                               f"max |Δ| {_fmt(err)} against the exact values", worst, verdict=NumericVerdict.WRONG_MATH)
        return "cos/sin tables match the exact values as closely as the reference's", worst

    def row_block_init(self, obs, t):
        d = obs["data"]
        children = d.get("children", {})
        for name in ("attn", "mlp"):
            if name not in children:
                raise Mismatch(f"Block has no submodule '{name}' (got {', '.join(children) or 'none'})")
        self._same_params("Block", {n: tuple(s) for n, s in d["params"].items()}, self.ref.block_param_shapes)
        return "submodules attn and mlp with the reference's parameters", None

    def row_attn_init(self, obs, t):
        for name, shapes in obs["data"]["shapes"].items():
            label = "CausalSelfAttention" if name == "depth4" else f"CausalSelfAttention ({name}: n_head 4, n_kv_head {self.ref.shared_kv_cases[name]['config']['n_kv_head']})"
            self._same_params(label, {n: tuple(s) for n, s in shapes.items()}, self.ref.attn_param_shapes[name])
        return "c_q, c_k, c_v, c_proj shapes match for MHA, GQA and MQA", None

    def row_mlp_init(self, obs, t):
        self._same_params("MLP", {n: tuple(s) for n, s in obs["data"]["params"].items()}, self.ref.mlp_param_shapes)
        return "c_fc and c_proj match", None

    def _params(self, t):
        return {k[6:]: v for k, v in t.items() if k.startswith("param:")}

    def _check_std(self, name, p, want_std, what):
        std, mean = (float(x) for x in torch.std_mean(p.float()))
        if not (math.isfinite(std) and math.isfinite(mean)):
            raise Mismatch(f"{name} is not initialised by {what} (it still holds the NaNs the check put "
                           f"there, or NaN/inf values)")
        if want_std == 0.0:
            if std != 0.0 or mean != 0.0:
                raise Mismatch(f"{name} should start at zero (the reference zeroes it so each block begins "
                               f"as the identity), but has std {_fmt(std)}")
            return
        if std == 0.0:
            raise Mismatch(f"{name} is {'all zeros' if mean == 0 else 'constant'}; the reference initialises "
                           f"it with std {_fmt(want_std)}")
        if abs(std / want_std - 1) > STD_TOL:
            raise Mismatch(f"{name}: std {_fmt(std)}, the reference's init gives {_fmt(want_std)} "
                           f"({std / want_std:.2f}×)", abs(std - want_std))
        if abs(mean) > 0.05 * want_std + 1e-6:
            raise Mismatch(f"{name}: mean {_fmt(mean)}; the reference's init is centred on 0")

    def row_init_weights(self, obs, t):
        ref = self.ref
        params = self._params(t)
        missing = [n for n in ref.init_final if n not in params]
        if missing:  # the model it ran on had them all (built by __init__ or the reference's): init_weights lost them
            raise Mismatch(f"parameter {missing[0]} is gone after init_weights: it must set the parameters' "
                           f"values, not remove or replace the parameters")
        for name, stats in ref.init_final.items():
            self._check_std(name, params[name], 0.0 if stats["zero"] else stats["std"], "init_weights")
        for name, want in zip(("cos", "sin"), ref.rotary):
            got = t.get("buffer:" + name)
            tol = max(1e-4, rounding(got.dtype)) if got is not None else 0.0
            if got is not None and (got.shape != want.shape or max_abs_diff(got, want) > tol):
                raise Mismatch(f"after init_weights the rotary {name} table is wrong: recompute it with "
                               f"_precompute_rotary_embeddings on the model's device")
        return "zeros and init std match the reference for every parameter", None

    def row_init_rule(self, obs, t):
        params = self._params(t)
        missing = [n for n in self.ref.init_rule_std if n not in params]
        if missing:  # a missing parameter is a failure, never a skip
            raise Mismatch(f"parameter {missing[0]} is gone after _init_weights: it must set the parameters' "
                           f"values, not remove or replace the parameters")
        for name, std in self.ref.init_rule_std.items():
            self._check_std(name, params[name], std, "_init_weights")
        return "Linear and Embedding stds match the reference's rule", None

    def _fn_cases(self, obs, t, what, cases, fn64, variants):
        worst, notes = 0.0, []
        for i, case in enumerate(cases):
            out = t.get(f"out{i}")
            label = f"{what} on a {_shape(case[0].shape)} input"
            d, note = self.compare(label, out, case[-1], FN_TOL, t.get(f"out{i}@64"),
                                   lambda i=i, case=case: self.ref64((what, i), lambda: fn64(case)),
                                   variants=lambda case=case: variants(case))
            worst = max(worst, d)
            notes += [note] if note else []
        return (notes[0] if notes else f"matches on {len(cases)} random inputs"), worst

    def row_norm(self, obs, t):
        return self._fn_cases(obs, t, "norm", self.ref.norm_cases, lambda c: ref_gpt.norm(c[0].double()),
                              lambda c: mistakes.norm_variants(c[0]))

    def row_rotary(self, obs, t):
        return self._fn_cases(obs, t, "apply_rotary_emb", self.ref.rotary_cases,
                              lambda c: ref_gpt.apply_rotary_emb(c[0].double(), c[1].double(), c[2].double()),
                              lambda c: mistakes.rotary_variants(c[0], c[1], c[2]))

    def _module64(self, key, module, *args):
        def compute():
            m = copy.deepcopy(module).double()
            return m(*[to_float64(a) for a in args])
        return lambda: self.ref64(key, compute)

    def row_attn_forward(self, obs, t):
        ref, L = self.ref, ISOLATED_LAYER
        attn = ref.model.transformer.h[L].attn
        a, cs = ref.acts["attn_in"], ref.acts["cos_sin"]
        d, note = self.compare("attention output", t.get("out"), ref.acts["attn_out"], MODULE_TOL, t.get("out@64"),
                               self._module64("attn", attn, a, cs, None),
                               variants=lambda: mistakes.attention_variants(attn, a, cs))
        worst, notes = d, [note] if note else []
        for name, case in ref.shared_kv_cases.items():
            kv = case["config"]["n_kv_head"]
            d, note = self.compare(f"attention with {name} ({case['config']['n_head']} query heads sharing {kv} "
                                   f"key/value head{'s' if kv > 1 else ''})", t.get("out_" + name), case["out"],
                                   MODULE_TOL, t.get(f"out_{name}@64"),
                                   self._module64("attn_" + name, case["module"], case["x"], case["cos_sin"], None),
                                   variants=lambda case=case: mistakes.attention_variants(case["module"], case["x"], case["cos_sin"]))
            worst = max(worst, d)
            notes += [note] if note else []
        return (notes[0] if notes else "matches the reference for MHA, GQA and MQA"), worst

    def row_mlp_forward(self, obs, t):
        ref = self.ref
        mlp = ref.model.transformer.h[ISOLATED_LAYER].mlp
        x = ref.acts["mlp_in"]
        d, note = self.compare("MLP output", t.get("out"), ref.acts["mlp_out"], MODULE_TOL, t.get("out@64"),
                               self._module64("mlp", mlp, x), variants=lambda: mistakes.mlp_variants(mlp, x))
        return note or "matches the reference", d

    def row_block_forward(self, obs, t):
        ref = self.ref
        block = ref.model.transformer.h[ISOLATED_LAYER]
        x, cs = ref.acts["block_in"], ref.acts["cos_sin"]
        d, note = self.compare("block output", t.get("out"), ref.acts["block_out"], MODULE_TOL, t.get("out@64"),
                               self._module64("block", block, x, cs, None),
                               variants=lambda: mistakes.block_variants(block, x, cs))
        return note or "matches the reference", d

    def _gpt64(self):
        def compute():
            m = copy.deepcopy(self.ref.model).double()
            idx, tgt = self.ref.inputs[:, :LOGITS_T], self.ref.targets[:, :LOGITS_T]
            return {"logits": m(idx), "loss": m(self.ref.inputs, self.ref.targets), "loss_prefix": m(idx, tgt)}
        return self.ref64("gpt", compute)

    def _answers(self, obs) -> dict:
        """What a whole-GPT row (GPT.forward, the whole model, gradients) is compared with, on the LOGITS_T prefix:
        the reference's answers; or, when the learner's GPT keeps its rotary tables in another dtype
        (obs["data"]["table_dtype"], e.g. bfloat16 as nanochat's own code does), the reference run on those
        same tables, so that only the math is judged (with a note saying so)."""
        name = (obs.get("data") or {}).get("table_dtype") or "float32"
        dtype = getattr(torch, name, None) if name.isidentifier() else None
        if not isinstance(dtype, torch.dtype) or dtype == self.ref.rotary[0].dtype or not dtype.is_floating_point:
            return {"logits": self.ref.logits, "loss_none": self.ref.loss_none, "grads": self.ref.grads,
                    "logits64": lambda: self._gpt64()["logits"], "loss64": lambda: self._gpt64()["loss_prefix"]}
        self.notes.append(f"your rotary tables are {name} (nanochat's own code keeps them so); compared with the "
                          f"reference run on the same {name} tables, in float32 and float64")
        if ("tables", name) not in self.ref.cache64:
            self.ref.cache64[("tables", name)] = reference_on_tables(self.ref, dtype)
        answers = self.ref.cache64[("tables", name)]
        return {**answers, "logits64": lambda: answers["logits@64"], "loss64": lambda: answers["loss@64"]}

    def _logits_and_loss(self, t, answers, what_logits, what_loss, variants=None):
        ref = self.ref
        d1, n1 = self.compare(what_logits, t.get("logits"), answers["logits"], MODULE_TOL, t.get("logits@64"),
                              answers["logits64"], variants=variants)
        loss = t.get("loss")
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.reshape(())
        idx, tgt = ref.inputs[:, :LOGITS_T], ref.targets[:, :LOGITS_T]
        d2, n2 = self.compare(what_loss, loss, answers["loss_none"].mean(), MODULE_TOL, t.get("loss@64"),
                              answers["loss64"], variants=lambda: mistakes.loss_variants(answers["logits"], idx, tgt))
        return max(d1, d2), n1 or n2

    def row_gpt_forward(self, obs, t):
        ref = self.ref
        model, idx = ref.model, ref.inputs[:, :LOGITS_T]
        answers = self._answers(obs)
        worst, note = self._logits_and_loss(t, answers, "logits", "mean loss",
                                            variants=lambda: mistakes.gpt_forward_variants(model, idx))
        none, want = t.get("loss_none"), answers["loss_none"]
        if isinstance(none, torch.Tensor) and none.numel() == want.numel():
            none = none.reshape(want.shape)
        d, _ = self.compare("loss with loss_reduction='none' (one loss per token)", none, want, MODULE_TOL)
        return note or "logits, mean loss and per-token losses match the reference", max(worst, d)

    def row_whole_model(self, obs, t):
        where = obs["data"].get("first_nonfinite")
        try:
            worst, note = self._logits_and_loss(t, self._answers(obs), "your model's logits", "your model's loss")
        except Verdict as v:
            followed = self._against_experiments(v, t)
            if followed is not None:
                return followed
            if where:
                v.detail += f"; the first NaN/inf appears in {where['name']} ({where['type']})"
            upstream = next((r["qualname"] for r in self._rows if is_failing(r)), None)
            if upstream and v.status == Status.MISMATCH:
                kind = Status.MISMATCH if self._status_of(upstream) == Status.MISMATCH else Status.ERROR
                v.detail += f" — follows from the {upstream} {kind.value} above"
            raise
        return note or "your own model with the reference's weights gives the reference's logits and loss", worst

    def _against_experiments(self, verdict: Verdict, t):
        """(detail, max |Δ|) when the learner's whole model, which differs from the reference, gives what the
        reference gives with the learner's experiments in place (computed in the check's process: the worker
        never runs learner code); None when there are no experiments or it differs from that too."""
        xlogits, xloss = t.get("xref:logits"), t.get("xref:loss")
        if not self.experiments or verdict.status != Status.MISMATCH or xlogits is None or xloss is None:
            return None
        logits, loss = t.get("logits"), t.get("loss")
        if not isinstance(logits, torch.Tensor) or not isinstance(loss, torch.Tensor) or logits.shape != xlogits.shape:
            return None
        d = max(max_abs_diff(logits, xlogits), max_abs_diff(loss.reshape(()), xloss.reshape(())))
        if d > MODULE_TOL:
            return None
        self.followed = list(self.experiments)
        names = ", ".join(self.experiments)
        return (f"follows your experiment ({names}): the reference with it in place gives the same logits and loss "
                f"(max |Δ| {_fmt(d)}); the experiment moves them by max |Δ| {_fmt(verdict.max_abs_diff)} from "
                f"the plain reference"), d

    def row_gradients(self, obs, t):
        ref = self.ref
        if self._follows("GPT (whole model)"):  # compare with the reference that has the experiments in place
            return self._gradients_against(obs, t, {n: t.get("xref:grad:" + n) for n in ref.grads},
                                           "the reference's with your experiment in place")
        return self._gradients_against(obs, t, self._answers(obs)["grads"], "the reference's")

    def _follows(self, qualname):
        rows = getattr(self, "_rows", [])
        return next((bool(r.get("follows_experiment")) for r in rows if r["qualname"] == qualname), False)

    def _gradients_against(self, obs, t, expected: dict, whose: str):
        ref = self.ref
        no_grad = obs["data"].get("no_grad", [])
        if no_grad:
            raise Mismatch(f"no gradient reaches {no_grad[0]}" + (f" (and {len(no_grad) - 1} more)" if len(no_grad) > 1 else "")
                           + ": it is not used in the forward pass, or the graph is cut (.detach(), .data, torch.no_grad)")
        worst = 0.0
        for name, want in expected.items():
            got = t.get("grad:" + name)
            if got is None or want is None:
                raise Mismatch(f"no gradient for {name}" + ("" if got is None else f" from {whose}"))
            if tuple(got.shape) != tuple(want.shape):
                raise Mismatch(f"the gradient of {name} has shape {_shape(got.shape)}")
            scale = ref.grad_scale[name] + 1e-12
            d = max_abs_diff(got, want)
            worst = max(worst, d)
            if d <= 1e-3 * scale + 1e-7:
                continue
            if math.isinf(d):
                raise Mismatch(f"the gradient of {name} has NaN or inf values", math.inf)
            if scale > 1e-12 and not bool((got != 0).any()):
                raise Mismatch(f"the gradient of {name} is all zeros but the reference's is not: the "
                               f"graph is cut before it (.detach(), .data, torch.no_grad) or it is unused")
            logits_ok = self._status_of("GPT (whole model)") == Status.PASS
            why = (" although the logits and loss match: the forward cuts or reshapes the graph somewhere "
                   "(.detach(), .data, an in-place op)") if logits_ok else " (follows from the forward mismatch above)"
            raise Mismatch(f"the gradient of {name} differs from {whose} — max |Δ| {_fmt(d)}{why}", d)
        if whose != "the reference's":
            self.followed = list(self.experiments)
        return f"every gradient is finite and matches {whose}", worst

    def row_setup_optimizers(self, obs, t):
        d = obs["data"]
        self._same_optimizers(d["default"], self.ref.optimizers, "")
        self._same_optimizers(d["custom"], self.reference_custom_optimizers(), " when called with " + ", ".join(
            f"{k}={v}" for k, v in CUSTOM_LRS.items()))
        return "AdamW for wte and lm_head, Muon for the block matrices, with the reference's learning rates", None

    def reference_custom_optimizers(self):
        from workbench.check.reference import describe_optimizers
        if "custom_optimizers" not in self.ref.cache64:
            self.ref.cache64["custom_optimizers"] = describe_optimizers(self.ref.model.setup_optimizers(**CUSTOM_LRS), self.ref.model)
        return self.ref.cache64["custom_optimizers"]

    @staticmethod
    def _family(desc):
        mro = desc.get("mro", [])
        if "Muon" in mro:
            return "Muon"
        if "AdamW" in mro:
            return "AdamW"
        if "Adam" in mro:
            return "Adam"
        return desc.get("class", "?")

    def _same_optimizers(self, got, want, when):
        def by_param(descs):
            out = {}
            for i, desc in enumerate(descs):
                for g in desc["groups"]:
                    for name in g["params"]:
                        out.setdefault(name, []).append((i, self._family(desc), g))
            return out
        got_p, want_p = by_param(got), by_param(want)
        if [self._family(x) for x in got] != [self._family(x) for x in want]:
            raise Mismatch(f"setup_optimizers{when} returns [{', '.join(self._family(x) for x in got)}]; "
                           f"the reference returns [{', '.join(self._family(x) for x in want)}] (training "
                           f"code relies on that order)")
        for name, entries in want_p.items():
            (_, wfam, wg), = entries
            if name not in got_p:
                raise Mismatch(f"{name} is in no optimizer{when}: it would never be trained")
            if len(got_p[name]) > 1:
                raise Mismatch(f"{name} is in {len(got_p[name])} param groups{when}; each parameter belongs to exactly one")
            _, gfam, gg = got_p[name][0]
            if gfam != wfam:
                why = (" — Muon is for the 2-D matrices inside the blocks; the embedding and lm_head go to AdamW"
                       if wfam == "AdamW" else " — every matrix inside the blocks goes to Muon")
                raise Mismatch(f"{name} is optimised by {gfam}{when}; the reference uses {wfam}{why}")
            if not math.isclose(float(gg.get("lr", -1)), float(wg["lr"]), rel_tol=1e-6):
                scale = " (AdamW rates are scaled by (n_embd / 768) ** -0.5)" if wfam == "AdamW" else ""
                raise Mismatch(f"{name}: lr {_fmt(float(gg.get('lr', -1)))}{when}; the reference's is "
                               f"{_fmt(wg['lr'])}{scale}")
            if "initial_lr" not in gg or not math.isclose(float(gg["initial_lr"]), float(wg["initial_lr"]), rel_tol=1e-6):
                raise Mismatch(f"the group holding {name} has no initial_lr equal to its lr{when}: the "
                               f"learning-rate schedule multiplies initial_lr")
            for key in ("betas", "eps", "weight_decay", "momentum", "nesterov", "ns_steps"):
                if key in wg and gg.get(key) != wg[key]:
                    raise Mismatch(f"{name}: {key} = {gg.get(key)!r}{when}; the reference uses {wg[key]!r}")
        extra = [n for n in got_p if n not in want_p]
        if extra:
            raise Mismatch(f"an optimizer holds {extra[0]}, which is not a parameter of the model")

    def row_get_device(self, obs, t):
        d = obs["data"]
        if not d.get("is_device"):
            raise Mismatch(f"get_device() returned {d.get('device')!r}, not a torch.device")
        if d.get("device") != d.get("param_device"):
            raise Mismatch(f"get_device() says {d.get('device')}, but the parameters are on {d.get('param_device')}")
        return f"returns {d.get('device')}", None

    def row_estimate_flops(self, obs, t):
        got = obs["data"].get("flops")
        want = self.ref.flops
        if not isinstance(got, (int, float)):
            raise Mismatch(f"estimate_flops() returned {got}, not a number")
        if math.isclose(got, want, rel_tol=1e-9):
            return f"{want:.4g} FLOPs per token", 0.0
        for description, value in mistakes.flops_variants(self.ref.model):
            if math.isclose(got, value, rel_tol=1e-9):
                raise Mismatch(f"estimate_flops() = {got:.4g}; looks like your code {description} "
                               f"(reference {want:.4g})", abs(got - want))
        raise Mismatch(f"estimate_flops() = {got:.4g}; the reference's 6·(params − embedding) + "
                       f"12·n_layer·n_head·head_dim·sequence_len = {want:.4g}", abs(got - want))

    def row_generate(self, obs, t):
        d, ref = obs["data"], self.ref
        greedy = d.get("greedy", [])
        if len(greedy) != GEN_TOKENS:
            raise Mismatch(f"generate(tokens, max_tokens={GEN_TOKENS}) yielded {len(greedy)} tokens")
        if not all(isinstance(x, int) for x in greedy):
            raise Mismatch(f"generate should yield plain ints (next_ids.item()), got {greedy[0]!r}")
        if greedy != ref.greedy:
            i = next(i for i, (a, b) in enumerate(zip(greedy, ref.greedy)) if a != b)
            raise Mismatch(f"with temperature=0 token {i + 1} is {greedy[i]}, the reference picks "
                           f"{ref.greedy[i]} (greedy means argmax of the last position's logits)")
        if d.get("top_k_1") != greedy[:len(d.get("top_k_1") or [])] or not d.get("top_k_1"):
            raise Mismatch("with top_k=1 only the most likely token may be sampled, so it should equal greedy "
                           "decoding")
        if d.get("sample_a") != d.get("sample_b"):
            raise Mismatch("two runs with the same seed sampled different tokens: seed a torch.Generator "
                           "with `seed` and pass it to torch.multinomial")
        self._same_samples(d)
        return "greedy tokens match the reference; top-k and seeding behave", None

    def _same_samples(self, d):
        """Sampled tokens at temperature > 0 against the reference's with the same seed and generator use."""
        for key, kw in SAMPLING.items():
            got = d.get(key)
            want = self.ref64(("generate", key), lambda kw=kw: list(self.ref.model.generate(
                list(self.ref.prompt), SAMPLED_TOKENS, **kw)))
            if got == want:
                continue
            settings = ", ".join(f"{k}={v}" for k, v in kw.items())
            i = next((i for i, (a, b) in enumerate(zip(got or [], want)) if a != b), min(len(got or []), len(want)))
            why = ("your tokens are the greedy ones: with temperature > 0 sample from softmax(logits / temperature)"
                   if got == self._greedy_tokens(SAMPLED_TOKENS) else
                   "draw with torch.multinomial(probs, 1, generator=rng), rng = torch.Generator seeded with `seed` "
                   "once before the loop, probs = softmax(logits / temperature) after the top-k cut")
            raise Mismatch(f"generate(..., {settings}) yields {got}; the reference samples {want} (first "
                           f"difference at token {i + 1}): {why}")

    def _greedy_tokens(self, n):
        return self.ref64(("generate", "greedy", n), lambda: list(self.ref.model.generate(
            list(self.ref.prompt), n, temperature=0.0)))

    def row_kv_cache(self, obs, t):
        d = obs["data"]
        unc, pre, step = t.get("attn_uncached"), t.get("attn_prefill"), t.get("attn_step")
        if pre is None or step is None or max_abs_diff(pre, unc[:, :KV_PREFIX]) > MODULE_TOL:
            raise Mismatch(f"CausalSelfAttention.forward with a KV cache: the prefill of {KV_PREFIX} tokens "
                           f"differs from the uncached output (insert k, v into the cache and attend causally)",
               None if pre is None else max_abs_diff(pre, unc[:, :KV_PREFIX]))
        diff = max_abs_diff(step, unc[:, KV_PREFIX:])
        if diff > MODULE_TOL:
            raise Mismatch(f"CausalSelfAttention.forward with a KV cache: one new token after {KV_PREFIX} "
                           f"cached ones differs from the uncached output — max |Δ| {_fmt(diff)} (attend to "
                           f"all cached keys, without the causal mask)", diff)
        diff = max_abs_diff(t["gpt_step"], t["gpt_uncached"])
        if diff > MODULE_TOL:
            raise Mismatch(f"GPT.forward with a KV cache: the token after {KV_PREFIX} cached ones gets other "
                           f"logits than without a cache — max |Δ| {_fmt(diff)}: its rotary position should "
                           f"start at kv_cache.get_pos() (T0)", diff)
        cached, uncached = t.get("cached_logits", []), t.get("uncached_logits", [])
        for i in range(min(len(cached), len(uncached))):
            diff = max_abs_diff(cached[i], uncached[i])
            if diff > MODULE_TOL:
                raise Mismatch(f"with the KV cache the logits for generated token {i + 1} differ from "
                               f"uncached decoding — max |Δ| {_fmt(diff)}", diff)
        if d.get("engine_tokens") != d.get("uncached_tokens"):
            raise Mismatch(f"nanochat's Engine produced {d.get('engine_tokens')}, uncached decoding "
                           f"{d.get('uncached_tokens')}")
        return f"Engine with the KV cache decodes the same {GEN_TOKENS} tokens as uncached decoding", None

    def row_loss_at_init(self, pipeline):
        losses = pipeline.get("losses") or []
        if not losses:
            return None
        loss = _recomputed(pipeline, "init")
        ln_v = self.ref.ln_vocab
        if not math.isfinite(loss):
            raise Mismatch(f"the loss at init is {loss}")
        if abs(loss - ln_v) > 0.05:
            hint = (" — at init the model should spread its bets evenly over the vocabulary (the reference zeroes "
                    "lm_head so every logit starts at 0)")
            raise Mismatch(f"loss at init {loss:.3f}; expected ≈ ln({self.ref.vocab_size}) = {ln_v:.3f}{hint}",
                           abs(loss - ln_v))
        return f"{loss:.4f} ≈ ln({self.ref.vocab_size}) = {ln_v:.4f}", abs(loss - ln_v)

    def row_training(self, pipeline, steps):
        if not pipeline.get("losses"):  # the check never reported a loss (it died before the forward)
            return None
        reached = stage_index(pipeline.get("stage"))
        if pipeline.get("outcome") != Outcome.DONE and reached is not None and reached <= stage_index(Stage.TRAIN):
            return None
        losses = [_recomputed(pipeline, "init"), _recomputed(pipeline, "final")]
        if not all(math.isfinite(x) for x in losses):
            raise Mismatch("the loss became NaN/inf during training")
        if losses[-1] >= losses[0]:
            raise Mismatch(f"the loss did not go down while overfitting one batch: {losses[0]:.3f} → "
                           f"{losses[-1]:.3f} after {steps} step(s)")
        return f"{losses[0]:.3f} → {losses[-1]:.3f} after {steps} step(s) on one batch", None

    def _status_of(self, qualname):
        for row in getattr(self, "_rows", []):
            if row["qualname"] == qualname:
                return row["status"]
        return None

    JUDGES = {
        "GPT.__init__": row_gpt_init, "GPT._precompute_rotary_embeddings": row_precompute,
        "Block.__init__": row_block_init, "CausalSelfAttention.__init__": row_attn_init, "MLP.__init__": row_mlp_init,
        "GPT.init_weights": row_init_weights, "GPT._init_weights": row_init_rule, "norm": row_norm,
        "apply_rotary_emb": row_rotary, "CausalSelfAttention.forward": row_attn_forward,
        "MLP.forward": row_mlp_forward, "Block.forward": row_block_forward, "GPT.forward": row_gpt_forward,
        "GPT (whole model)": row_whole_model, "gradients": row_gradients,
        "GPT.setup_optimizers": row_setup_optimizers, "GPT.get_device": row_get_device,
        "GPT.estimate_flops": row_estimate_flops, "GPT.generate": row_generate, "KV-cache decoding": row_kv_cache,
    }

    # ---- assembling the rows ------------------------------------------------------------------------------------

    def rows(self, experiments: dict, pipeline: dict, steps: int, interrupted: str | None, smap_def_line) -> list:
        self._rows = []
        for qualname, phase, what in ROWS:
            row = {"qualname": qualname, "phase": phase, "check": what, "status": Status.SKIPPED, "detail": "",
                   "max_abs_diff": None, "lesson": LESSON_FOR.get(qualname), "line": smap_def_line(qualname),
                   "seconds": (experiments.get(DERIVED.get(qualname) or qualname) or {}).get("seconds")}
            self.notes = []
            try:
                self._fill(row, qualname, experiments, pipeline, steps, interrupted)
            except Verdict as v:
                row.update(status=v.status, detail=v.detail, max_abs_diff=v.max_abs_diff, **v.extra)
            except Exception as e:  # a bug in a judge must not take the whole report down
                row.update(status=Status.ERROR, detail=f"the workbench could not judge what your code produced "
                                                  f"({type(e).__name__}: {e})")
            if self.notes:
                row["notes"] = list(dict.fromkeys(self.notes))
                row["detail"] += "".join(f" (note: {n})" for n in row["notes"])
            if row["max_abs_diff"] is not None and not math.isfinite(row["max_abs_diff"]):
                row["max_abs_diff"] = None
            if qualname in self.experiments:
                mark_experiment(row)
            self._rows.append(row)
        return self._rows

    def _fill(self, row, qualname, experiments, pipeline, steps, interrupted):
        if qualname in ("loss at init", "training"):
            blocked = self._pipeline_blocked(pipeline, interrupted)
            if blocked is not None and not pipeline.get("losses"):  # it never got to a loss
                raise blocked
            result = (self.row_loss_at_init(pipeline) if qualname == "loss at init"
                      else self.row_training(pipeline, steps))
            if result is None:
                raise blocked or Verdict(Status.SKIPPED, "the training step did not get this far")
            row.update(status=Status.PASS, detail=result[0], max_abs_diff=result[1])
            return
        source = DERIVED.get(qualname) or qualname
        obs = experiments.get(source)
        if obs is None:
            if interrupted:
                raise Verdict(Status.NOT_REACHED, f"not reached: the check process stopped during {interrupted}")
            raise Verdict(Status.SKIPPED, "not run")
        status = obs["status"]
        if status == Outcome.SKIPPED:
            raise Verdict(Status.SKIPPED, obs.get("reason", ""))
        if status in (Outcome.TODO, Outcome.WAITS):
            exc = obs.get("exception") or {}
            if status == Outcome.TODO and source == qualname:
                raise Verdict(Status.TODO, f"not written yet: {exc.get('message', 'TODO')}")
            raise Verdict(Status.TODO, f"waits for {exc.get('qualname') or 'an earlier method'} (TODO)")
        if status == Outcome.ERROR:
            exc = obs.get("exception") or {}
            where = f" (line {exc['line']}{' in ' + exc['qualname'] if exc.get('qualname') else ''})" if exc.get("line") else ""
            oom = "out of memory: " if exc.get("out_of_memory") else ""
            kind = "" if exc.get("type") == CONTRACT_ERROR else f"{exc.get('type', 'Error')}: "
            raise Verdict(Status.ERROR, f"{oom}{kind}{exc.get('message', '')}{where}", error_line=exc.get("line"))
        tensors = obs.get("tensors") or {}
        self.float_noise, self.followed = False, None
        detail, diff = self.JUDGES[qualname](self, obs, tensors)
        row.update(status=Status.PASS, detail=detail, max_abs_diff=diff)
        if self.float_noise:  # set by compare() when only the float64 re-run tells it apart
            row["verdict"] = NumericVerdict.FLOAT_NOISE
        if self.followed:  # set when it matches only the reference with the learner's experiments in place
            row["follows_experiment"] = self.followed
        if obs.get("isolation") == "the reference's __init__" and qualname.endswith(("forward", "init_weights")):
            row["detail"] += " (checked on the reference's layout: your __init__ is not usable yet)"

    def _pipeline_blocked(self, pipeline, interrupted):
        outcome = pipeline.get("outcome")
        exc = pipeline.get("exception") or {}
        if outcome == Outcome.TODO:
            return Verdict(Status.TODO, f"waits for {exc.get('qualname') or 'an earlier method'} (TODO)")
        if outcome == Outcome.ERROR:
            return Verdict(Status.SKIPPED, f"the training step stopped with an error at stage {pipeline.get('stage')}")
        if interrupted:
            return Verdict(Status.NOT_REACHED, f"not reached: the check process stopped during {interrupted}")
        return None


def mark_experiment(row) -> None:
    """A row of a method the learner marked as an experiment: differing from the reference is what it is for,
    so a mismatch becomes `experiment` (the reason still says how it differs); a pass says it is marked; an
    error or a TODO stays what it is (an experiment still has to run)."""
    if row["status"] == Status.MISMATCH:
        row.update(status=Status.EXPERIMENT, detail=f"experiment (not a failure): {row['detail']}")
    elif row["status"] == Status.PASS:
        row["detail"] += " (marked as an experiment, but it matches the reference)"


def _recomputed(pipeline: dict, which: str) -> float:
    """A loss the worker recomputed from the learner's weights (workbench/check/verify.py): the verdict rests on it,
    not on the number the child reported."""
    value = (pipeline.get("recomputed") or {}).get(which)
    if value is None:
        raise Mismatch("the workbench could not recompute this loss from your model's weights: their names or "
                       "shapes differ from the reference's (see GPT.__init__)")
    return value


def phase_for(qualname: str | None) -> int | None:
    if qualname is None:
        return None
    return phase_of(qualname)


# ---------------------------------------------------------------------------------------------------------------
# the whole result


SIGNAL_MEANING = {
    "SIGSEGV": "segmentation fault: memory was read or written where it must not be (ctypes, a C extension)",
    "SIGABRT": "aborted: a C library gave up (abort(), a failed C assertion)",
    "SIGBUS": "bus error: bad memory access",
    "SIGFPE": "floating-point exception in C code",
    "SIGILL": "illegal instruction",
    "SIGKILL": "killed from outside: most likely the system ran out of memory (the OOM killer)",
    "SIGTERM": "terminated from outside",
}


def _signal_name(num: int) -> str:
    import signal as _signal
    try:
        return _signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def parse_fault_dump(text: str, path: str) -> tuple[int | None, str]:
    """The innermost line of the learner's file in a faulthandler dump (current thread first), and the dump
    cut down to the current thread's frames."""
    import re
    blocks = re.split(r"\n(?=(?:Current thread|Thread) 0x)", text)
    current = [b for b in blocks if "Current thread" in b] + blocks
    for block in current:
        for m in re.finditer(r'File "(.+?)", line (\d+) in (\S+)', block):
            if os.path.abspath(m.group(1)) == path:
                return int(m.group(2)), block.strip()
    return None, (current[0].strip() if current else "")


def build_result(ref, path, events, *, steps, status, kill_reason, timeout, fault_text, output, output_bytes,
                 output_lines, memory_limit, token=None, experiments=()) -> CheckResult:
    """The check result from the child's events, its exit `status`, why it was killed (if it was) and its output.
    With the run's `token`, events the check did not send are dropped and fail the run (workbench/check/verify.py).
    `experiments`: methods checked as experiments besides those marked in the file (`check --experiment`)."""
    from workbench.check import probe

    smap = probe.SourceMap(path)
    experiments = probe.experiments(smap, experiments)
    events, tampering = verify.screen(events, token) if token is not None else (events, [])
    run = _read_events(events)
    pipeline = run.pipeline
    if pipeline is not None:  # the losses the verdict rests on, recomputed here from the learner's weights
        pipeline["recomputed"] = verify.recomputed_losses(ref, pipeline.pop("tensors", None) or {})
    stage = pipeline["stage"] if pipeline else (run.stages[-1] if run.stages else Stage.IMPORT)
    error, next_todo = None, None
    if pipeline and pipeline.get("outcome") in (Outcome.TODO, Outcome.ERROR):
        exc = dict(pipeline.get("exception") or {})
        if pipeline["outcome"] == Outcome.TODO:
            next_todo = _todo(exc, smap)
        else:
            error = _error(exc, stage, memory_limit)
    interrupted = None
    if not run.ended:  # the child did not finish: timed out, crashed, exited, or our own bug
        interrupted = f"the check of {run.running}" if run.running else f"stage {stage}"
        crash = _crash(path, smap, run, stage, status, kill_reason, timeout, fault_text)
        if error is None or kill_reason in ("timeout", "stall", "stopped"):
            error = crash

    rows = Judge(ref, path, experiments).rows(run.experiments, pipeline or {}, steps, interrupted, smap.def_line)
    if next_todo is None and error is None:
        for row in rows:
            obs = run.experiments.get(row["qualname"])
            if row["status"] == Status.TODO and obs and obs.get("status") == Outcome.TODO:
                next_todo = _todo(dict(obs.get("exception") or {}), smap)
                break
    if tampering:  # nothing of this run is graded: any of its events may be forged
        error = verify.tampered_error(tampering)
        for row in rows:
            if row["status"] == Status.PASS:
                row.update(status=Status.ERROR, detail="not graded: the check's result channel was written to")
    ok = bool(pipeline and pipeline.get("outcome") == Outcome.DONE and run.ended and error is None
              and all(is_accepted(r) for r in rows))
    lead = lead_component(rows)
    pipeline = pipeline or {}
    first_nonfinite = pipeline.get("first_nonfinite")
    if first_nonfinite and error is not None and error.get("type") == "NonFinite":
        error["message"] += f"; the first NaN/inf appears in {first_nonfinite['name']} ({first_nonfinite['type']})"
    result: CheckResult = {
        "file": path,
        "ok": ok,
        "stage": stage,
        "next_todo": next_todo,
        "error": error,
        "components": rows,
        "lead": lead["qualname"] if lead else None,
        "shapes": [{k: v for k, v in e.items() if k != "finished"} for e in pipeline.get("shapes", [])],
        "first_nonfinite": first_nonfinite,
        "losses": verify.trusted_losses(pipeline.get("losses", []), pipeline.get("recomputed") or {}),
        "stdout_tail": _stdout_tail(output, output_bytes, output_lines),
        "stdout_bytes": output_bytes,
        "stdout_lines": output_lines,
        "timed_out": kill_reason in ("timeout", "stall"),
        "timings": {"stages": pipeline.get("timings", {}), "load_s": round(run.load_s, 4)},
        "config": dict(ref.config_kwargs),
        "steps": steps,
        "reference": {"loss": ref.loss, "ln_vocab": ref.ln_vocab, "tokenizer": ref.tokenizer_name},
    }
    if experiments:
        result["experiment"] = experiment_run(ref, experiments, run.experiment_run)
    return result


def experiment_run(ref, qualnames: list, event: dict | None) -> ExperimentRun:
    """The training side by side: the learner's losses as the check's process reported them (an experiment is
    shown, not graded), the reference's computed here (once per optimizer setup, kept in `ref.cache64`)."""
    own_optimizer = "GPT.setup_optimizers" in qualnames
    key = ("experiment curve", own_optimizer)
    if key not in ref.cache64:
        ref.cache64[key] = reference_curve(ref, ref_gpt.GPT.setup_optimizers if own_optimizer else shared_adamw)
    ref_losses, ref_final = ref.cache64[key]
    event = event or {}
    losses = [float(x) for x in (event.get("losses") or [])[:len(ref_losses)] if isinstance(x, (int, float))]
    final = event.get("final")
    reason = event.get("reason") if event else "the check stopped before training your model"
    return {"qualnames": list(qualnames), "steps": len(ref_losses), "tokens_per_step": EXPERIMENT_T,
            "optimizer": ("each model's own setup_optimizers (GPT.setup_optimizers is an experiment)" if own_optimizer
                          else f"AdamW, lr {EXPERIMENT_LR:g} on every parameter, the same for both"),
            "same_start": bool(event.get("same_start")), "learner_losses": losses, "reference_losses": ref_losses,
            "learner_final": float(final) if isinstance(final, (int, float)) and losses else None,
            "reference_final": ref_final, "reason": reason}


@dataclass
class _ChildRun:
    """What the child's events say: the pipeline, the experiments (with their tensors loaded), how far it got."""
    pipeline: dict | None
    stages: list
    experiments: dict
    running: str | None  # the experiment in flight when the events stop
    ended: bool
    internal: dict | None  # the child's report of a bug of ours
    load_s: float
    experiment_run: dict | None  # the learner's side of the training side by side (files with experiments)


def _read_events(events: list) -> _ChildRun:
    t_load = time.perf_counter()
    experiments = {}
    for e in events:
        if e.get("kind") in ("experiment", "pipeline") and e.get("tensor_file"):
            try:
                e["tensors"] = _load_tensors(e["tensor_file"])
            except Exception as exc:
                e.update(status=Outcome.ERROR, exception={"type": "WorkbenchError", "message":
                         f"could not read the check's tensors: {exc}"})
        if e.get("kind") == "experiment":
            experiments[e["qualname"]] = e
    started = [e["qualname"] for e in events if e.get("kind") == "experiment_start"]
    return _ChildRun(
        pipeline=next((e for e in reversed(events) if e.get("kind") == "pipeline"), None),
        stages=[e["stage"] for e in events if e.get("kind") == "stage"],
        experiments=experiments,
        running=next((q for q in reversed(started) if q not in experiments), None),
        ended=any(e.get("kind") == "end" for e in events),
        internal=next((e for e in events if e.get("kind") == "internal_error"), None),
        load_s=time.perf_counter() - t_load,
        experiment_run=next((e for e in events if e.get("kind") == "experiment_run"), None))


def _load_tensors(path: str) -> dict:
    """A tensor file of the check, if it is a regular file of a sane size: the child could have put a FIFO or a
    device in its place. The check's processes are all dead by now (the worker killed them), so it cannot change
    between this look and the load."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TENSOR_BYTES:
        raise FileRefused(f"{path} is not a regular file of at most {MAX_TENSOR_BYTES:,} bytes")
    return torch.load(path, weights_only=True, mmap=True)


def _crash(path, smap, run: _ChildRun, stage, status, kill_reason, timeout, fault_text) -> CheckError:
    """The error of a child that stopped before its end: a timeout, a signal, an exit, or a bug of ours."""
    where_line, dump = parse_fault_dump(fault_text, path)
    where_qual = smap.qualname_at(where_line) if where_line else None
    where = f" in {where_qual or '<module>'} (line {where_line})" if where_line else ""
    checking = f" while checking {run.running}" if run.running else ""
    crash = {"file": path if where_line else None, "line": where_line, "qualname": where_qual, "traceback": dump}
    if kill_reason == "timeout":
        crash.update(type="Timeout", message=f"timed out after {timeout:g} s in stage {stage}{checking}{where}: "
                                              f"your code is stuck in a loop or very slow (--timeout to allow more)")
    elif kill_reason == "stall":
        from workbench.check.worker import STALL_QUIET_S
        crash.update(type="Timeout", message=f"stuck in stage {stage}{checking}{where}: no progress for "
                     f"{STALL_QUIET_S:g} s and the same place on every look since — an endless loop? (every stage "
                     f"takes well under a second on the depth-4 model)")
    elif kill_reason == "stopped":
        crash.update(type="Crash", signal="SIGSTOP", message=f"the check process was stopped (SIGSTOP or SIGTSTP) "
                     f"in stage {stage}{checking}{where} and would never continue")
    elif run.internal is not None:
        crash.update(type="WorkbenchError", message=f"the workbench failed while checking "
                     f"({run.internal['message']}); this is a workbench bug",
                     traceback=run.internal.get("traceback", ""))
    elif status is not None and os.WIFSIGNALED(status):
        name = _signal_name(os.WTERMSIG(status))
        crash.update(type="Crash", signal=name, message=f"the check process died of {name} "
                     f"({SIGNAL_MEANING.get(name, 'killed by a signal')}) in stage {stage}{checking}{where}")
    elif status is not None and os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        crash.update(type="Exit", exit_code=code, message=f"the check process exited with code {code} in stage "
                     f"{stage}{checking}{where} before reporting: something called os._exit() (or a C library "
                     f"called exit())")
    else:
        crash.update(type="Crash", message=f"the check process ended without reporting in stage {stage}{checking}")
    return crash


def _stdout_tail(output: bytes, output_bytes: int, output_lines: int) -> str:
    """The last 400 lines the learner's code printed, saying how many earlier ones were not kept."""
    lines = output.decode("utf-8", "replace").splitlines()
    if output_bytes > len(output):
        lines = lines[1:]  # the first line kept is probably cut
    keep = lines[-400:]
    dropped = output_lines - len(keep)
    tail = "\n".join(keep)
    if dropped > 0 and output_bytes > 0:
        tail = f"[… {dropped:,} earlier line(s) of output not kept …]\n" + tail
    return tail


def _todo(exc: dict, smap) -> dict:
    qualname = exc.get("qualname")
    return {"qualname": qualname, "phase": phase_for(qualname), "message": exc.get("message", ""),
            "file": exc.get("file"), "line": exc.get("line"), "def_line": smap.def_line(qualname) if qualname else None,
            "lesson": LESSON_FOR.get(qualname)}


def _error(exc: dict, stage: str, memory_limit) -> dict:
    kind = "ContractError" if exc.get("type") == CONTRACT_ERROR else exc.get("type", "Error")
    error = {"type": kind, "message": exc.get("message", ""), "file": exc.get("file"),
             "line": exc.get("line"), "qualname": exc.get("qualname"), "traceback": exc.get("traceback", "")}
    if exc.get("out_of_memory"):
        cap = f"; a check may allocate about {memory_limit / (1 << 30):.1f} GiB (--memory)" if memory_limit else ""
        error.update(type="OutOfMemory", original_type=exc.get("type"),
                     message=f"out of memory in stage {stage}: {exc.get('message', '')}{cap}")
    elif exc.get("type") == "SystemExit":
        error["message"] = (f"{exc.get('message')} in stage {stage}: a model file must not exit the process")
    elif exc.get("type") == "SyntaxError":
        error["message"] = f"syntax error: {exc.get('message')}"
    if exc.get("first_nonfinite"):
        error["first_nonfinite"] = exc["first_nonfinite"]
    return error

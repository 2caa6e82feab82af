"""The check as it runs in the forked process: the learner's file through a training step, then each of its
methods on its own.

Two parts, both only *observe* and send what the learner's code produced to the worker, which judges it
against the reference (workbench/check/judge.py); nothing here decides pass or fail, so a learner file that patches
this module can not fake a result.

1. The pipeline, in the order training runs the code: import → construct the depth-4 GPT → init_weights →
   forward on a real batch (every submodule's shapes, every norm / apply_rotary_emb call) → backward →
   setup_optimizers and a step → more steps → generate. The first NotImplementedError on that path is the
   learner's next TODO.
2. One experiment per component, each run on its own: the method under test is the learner's, everything it
   calls is the reference's (reference child modules, reference `norm` / `apply_rotary_emb` lent to the
   learner's module globals, reference versions of the other methods through a subclass), and the weights are
   the reference's non-zero ones. A bug therefore shows in the component that has it, not in everything
   downstream. Tensors go to files in the run's scratch directory; events go to the worker as JSON lines.
"""

import contextlib
import copy
import functools
import importlib.util
import itertools
import json
import math
import os
import sys
import time
import traceback

import torch

from nanochat import gpt as ref_gpt
from workbench.check import ownership, probe, verify
from workbench.check.reference import (GEN_TOKENS, ISOLATED_LAYER, KV_PREFIX, LOGITS_T, PROMPT_LEN, SEED,
                                       describe_optimizers, initial_model, shared_adamw, train_curve)
from workbench.check.result import Outcome, Stage
from workbench.course.phases import ALL_METHODS

CUSTOM_LRS = dict(unembedding_lr=0.01, embedding_lr=0.1, matrix_lr=0.03, weight_decay=0.05)
SAMPLED_TOKENS = 8  # tokens sampled per setting in the generate check, compared with the reference's
SAMPLING = {"sample_t1": dict(temperature=1.0, seed=7), "sample_t07_k50": dict(temperature=0.7, top_k=50, seed=3)}

# classes a learner class builds in __init__: during an isolated check they are the reference's
CHILD_CLASSES = {"GPT": ("Block",), "Block": ("CausalSelfAttention", "MLP")}
FUNCTIONS = ("norm", "apply_rotary_emb")


class Skip(Exception):
    """The experiment cannot run; the message says why (shown as `skipped`)."""


class Channel:
    """Sends events to the worker (JSON lines on a pipe) and tensors through files in a scratch directory."""

    def __init__(self, fd: int, scratch: str, token: str = ""):
        self.fd, self.scratch, self.token = fd, scratch, token  # token: the run's, see workbench/check/verify.py
        self._n = itertools.count()

    def send(self, event: dict, tensors: dict | None = None) -> None:
        event = dict(event, token=self.token)
        if tensors:
            path = os.path.join(self.scratch, f"t{next(self._n)}.pt")
            torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)
            event["tensor_file"] = path
        data = (json.dumps(event, default=_jsonable) + "\n").encode("utf-8")
        while data:
            n = os.write(self.fd, data)
            data = data[n:]


def _jsonable(obj):
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, (torch.device, torch.dtype)):
        return str(obj)
    return repr(obj)[:200]


class Context:
    def __init__(self, path: str, ref, channel: Channel, steps: int, experiments=()):
        self.path = os.path.abspath(path)
        self.smap = probe.SourceMap(self.path)
        self.experiments = probe.experiments(self.smap, experiments)  # methods that differ on purpose
        self.ref = ref
        self.channel = channel
        self.steps = max(1, steps)
        self.mod = None
        self.borrowed: dict[str, str] = {}  # contract objects not defined in the learner's file (ownership.py)
        self.weights = {"init": None, "final": None}  # the learner's state_dict after init / after training
        self.whole_model = None  # the learner's own GPT with the shared weights, built once
        self.own_gpt = None  # the learner's GPT as its own __init__ builds it (False: that raised), built once
        self._templates = {}  # isolated instances built by the learner's __init__, copied per experiment
        self.pipeline = {}
        self.stage_started = 0.0  # perf_counter() when the pipeline entered its current stage

    # ---- learner classes with reference parts --------------------------------------------------------------

    def learner_class(self, name: str):
        cls = getattr(self.mod, name, None)
        if not isinstance(cls, type):
            raise Skip(f"your file defines no class {name}")
        if not issubclass(cls, torch.nn.Module):
            raise Skip(f"{name} in your file is not a torch.nn.Module subclass")
        return cls

    def hybrid(self, name: str, keep: set):
        """A subclass of the learner's class whose contract methods, except `keep` and __init__, are the reference's."""
        ref_cls = getattr(ref_gpt, name)
        overrides = {}
        for qualname in ALL_METHODS:
            cls_name, _, method = qualname.partition(".")
            if cls_name == name and method and method != "__init__" and method not in keep:
                overrides[method] = ref_cls.__dict__[method]
        return type(name, (self.learner_class(name),), overrides)

    def reference_children(self, name: str) -> dict:
        return {c: getattr(ref_gpt, c) for c in CHILD_CLASSES.get(name, ())}

    def isolated(self, name: str, keep: set, args: tuple, ref_module, state: dict | None, mutable: bool = False):
        """An instance running the learner's `keep` methods on the reference's weights and child modules.

        Built by the learner's own __init__ when that works and yields the reference's parameter names;
        otherwise a copy of the reference module whose class is switched to the hybrid (so a method can be
        checked before __init__ is written). Either way built once per (class, arguments); each experiment
        gets a copy that shares the weight tensors, or, when it will overwrite them (`mutable`), fresh parameters
        filled with NaN.
        """
        cls = self.hybrid(name, keep)
        key = (name, repr(getattr(args[0], "__dict__", args[0])), args[1:])
        if key not in self._templates:
            template = None
            try:
                with probe.swapped_globals(self.mod, **self.reference_children(name)), torch.random.fork_rng():
                    template = self.hybrid(name, set())(*args)
                if state is not None:
                    template.load_state_dict(state, strict=True)
                share_copy(template)
            except Exception:
                template = None
            self._templates[key] = template
        template = self._templates[key]
        how = "your __init__" if template is not None else "the reference's __init__"
        obj = share_copy(template if template is not None else ref_module)
        if mutable:  # fresh parameters full of NaN: what the method under test leaves alone shows up
            for module in obj.modules():
                for k, p in list(module._parameters.items()):
                    if p is not None:
                        module._parameters[k] = torch.nn.Parameter(torch.full_like(p, float("nan")), p.requires_grad)
        obj.__class__ = cls
        return obj, how

    def reference_functions(self) -> dict:
        return {f: getattr(ref_gpt, f) for f in FUNCTIONS}

    def config(self, **overrides):
        kw = dict(self.ref.config_kwargs)
        kw.update(overrides)
        cls = getattr(self.mod, "GPTConfig", None)
        if not isinstance(cls, type):
            raise Skip("your file defines no class GPTConfig")
        return cls(**kw)


def share_copy(module):
    """A copy of a module's structure that shares its parameter and buffer tensors (cheap: no 20 MB copy)."""
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


def _state(prefix: str, weights: dict) -> dict:
    return {k[len(prefix):]: v.clone() for k, v in weights.items() if k.startswith(prefix)}


def _differs(a, b, tol) -> bool:
    """A quick local test (the judge decides): does the learner's output need a float64 re-run?"""
    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return False
    return not bool(torch.isfinite(a).all()) or float((a.double() - b.double()).abs().max()) > tol


LOW_PRECISION = (torch.bfloat16, torch.float16)


def module_float64(module):
    """A float64 copy of a module, for the re-run that tells wrong math from rounding. Buffers kept in a low
    precision (rotary tables in bfloat16, as nanochat's own code keeps them) stay as they are: the module never
    makes float64 tables, and its code may insist on its own dtype; their values are exact in float64 anyway."""
    copied = copy.deepcopy(module)
    low = [(name, b) for name, b in copied.named_buffers() if b.dtype in LOW_PRECISION]
    copied.double()
    for name, b in low:
        owner, _, attr = name.rpartition(".")
        setattr(copied.get_submodule(owner) if owner else copied, attr, b)
    return copied


def to_float64(obj):
    """Tensors (and tuples of them) in float64, to tell wrong math from float rounding."""
    if isinstance(obj, torch.Tensor):
        return obj.double() if obj.is_floating_point() else obj
    if isinstance(obj, tuple):
        return tuple(to_float64(o) for o in obj)
    return obj


# ---------------------------------------------------------------------------------------------------------------
# the pipeline


def import_learner(path: str):
    name = "learner_" + "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    if not os.path.isfile(path):  # a FIFO or a device would block the import or never end
        raise ImportError(f"{path} is not a regular file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # @dataclass looks the module up while the file runs
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the learner's own helper modules next to the file
    spec.loader.exec_module(module)
    return module


def enter_stage(ctx: Context, stage: Stage) -> None:
    """Close the current stage's timing and tell the worker the check reached `stage`."""
    p, now = ctx.pipeline, time.perf_counter()
    p["timings"][p["stage"]] = round(now - ctx.stage_started, 4)
    ctx.stage_started = now
    p["stage"] = stage
    ctx.channel.send({"kind": "stage", "stage": stage})


def run_pipeline(ctx: Context) -> None:
    """The learner's model through one real training step and generation, stage by stage; the outcome, the
    losses, the shapes and the exception that stopped it (if any) go to the worker as one `pipeline` event."""
    p = ctx.pipeline
    p.update(stage=Stage.IMPORT, outcome=Outcome.RUNNING, losses=[], timings={})
    started = ctx.stage_started = time.perf_counter()
    ctx.channel.send({"kind": "stage", "stage": Stage.IMPORT})
    try:
        model = build_model(ctx)
        forward_and_backward(ctx, model)
        train(ctx, model)
        enter_stage(ctx, Stage.GENERATE)
        with torch.no_grad():
            tokens = list(itertools.islice(model.generate(list(ctx.ref.prompt), GEN_TOKENS, temperature=0.0),
                                           GEN_TOKENS))
        p["generated"] = [int(t) for t in tokens]
        enter_stage(ctx, Stage.DONE)
        p["outcome"] = Outcome.DONE
    except _NonFinite as e:
        p["outcome"] = Outcome.ERROR
        p["exception"] = {"type": "NonFinite", "message": str(e), "file": None, "line": None, "qualname": None,
                          "traceback": "", "first_nonfinite": e.where}
    except BaseException as e:  # the learner's code may raise anything, SystemExit and KeyboardInterrupt too
        info = probe.exception_info(e, ctx.smap)
        if isinstance(e, _ContractError):
            info.update(file=None, line=None, traceback="")
        p["outcome"] = Outcome.TODO if probe.is_todo(e, ctx.path) else Outcome.ERROR
        p["exception"] = info
    now = time.perf_counter()
    p["timings"][p["stage"]] = round(now - ctx.stage_started, 4)
    p["timings"]["pipeline_s"] = round(now - started, 4)
    try:
        ctx.channel.send({"kind": "pipeline", **p}, verify.weight_tensors(ctx.weights["init"], ctx.weights["final"]))
    except Exception:  # weights that cannot be saved: the losses then cannot be verified (and do not pass)
        ctx.channel.send({"kind": "pipeline", **p})


def build_model(ctx: Context):
    """Import the learner's file, build its GPT and initialise it."""
    ctx.mod = import_learner(ctx.path)
    ctx.borrowed = ownership.borrowed(ctx.mod, ctx.path)
    if ctx.borrowed:
        raise _ContractError(ownership.summary(ctx.borrowed))
    missing = [n for n in ("GPT", "GPTConfig") if not isinstance(getattr(ctx.mod, n, None), type)]
    if missing:
        raise _ContractError(f"your file must define {' and '.join(missing)} as a class (same names as "
                             f"nanochat/gpt.py)")
    enter_stage(ctx, Stage.CONSTRUCT)
    model = ctx.mod.GPT(ctx.config())
    if not isinstance(model, torch.nn.Module):
        raise _ContractError("GPT(config) did not build a torch.nn.Module")
    enter_stage(ctx, Stage.INIT)
    model.init_weights()
    ctx.weights["init"] = _snapshot(model)
    return model


def _snapshot(model) -> dict | None:
    """A copy of the model's weights, for the worker to recompute the losses with (workbench/check/verify.py)."""
    try:
        return {n: t.detach().clone() for n, t in model.state_dict().items() if isinstance(t, torch.Tensor)}
    except Exception:
        return None


def forward_and_backward(ctx: Context, model) -> None:
    """The loss at init on the reference's batch (recording every module's shapes), then its gradients."""
    p, ref = ctx.pipeline, ctx.ref
    enter_stage(ctx, Stage.FORWARD)
    recorder = probe.ShapeRecorder(model, ctx.mod)
    try:
        with recorder:
            loss = model(ref.inputs.clone(), ref.targets.clone())
    finally:
        p["shapes"] = recorder.rows()
        p["first_nonfinite"] = recorder.first_nonfinite
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise _ContractError(f"GPT.forward(idx, targets) must return the mean loss as a scalar tensor; "
                             f"it returned {shape}")
    p["losses"].append(float(loss))
    if not math.isfinite(float(loss)):
        raise _NonFinite("the loss at init is not finite", recorder.first_nonfinite)
    enter_stage(ctx, Stage.BACKWARD)
    loss.backward()
    p["missing_grads"] = [n for n, q in model.named_parameters() if q.grad is None]
    bad = [n for n, q in model.named_parameters() if q.grad is not None and not bool(torch.isfinite(q.grad).all())]
    if bad:
        raise _NonFinite(f"the gradient of {bad[0]} has NaN or inf values", recorder.first_nonfinite)


def train(ctx: Context, model) -> None:
    """The learner's optimizers: one step on the gradients above, then `ctx.steps` more on the same batch."""
    p, ref = ctx.pipeline, ctx.ref
    enter_stage(ctx, Stage.OPTIMIZE)
    optimizers = model.setup_optimizers()
    if not isinstance(optimizers, (list, tuple)) or not all(hasattr(o, "step") for o in optimizers):
        raise _ContractError("setup_optimizers() must return a list of optimizers, e.g. [adamw, muon]")
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)
    model.estimate_flops()
    enter_stage(ctx, Stage.TRAIN)
    for step in range(2, ctx.steps + 1):
        ctx.channel.send({"kind": "progress", "step": step})  # the worker watches for a stall (worker.py)
        loss = model(ref.inputs.clone(), ref.targets.clone())
        p["losses"].append(float(loss))
        if not math.isfinite(float(loss)):
            raise _NonFinite(f"the loss became {float(loss)} after {step - 1} step(s)", None)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
    with torch.no_grad():  # the loss after the last step: forward only
        loss = model(ref.inputs.clone(), ref.targets.clone())
    p["losses"].append(float(loss))
    ctx.weights["final"] = _snapshot(model)
    if not math.isfinite(float(loss)):
        raise _NonFinite(f"the loss became {float(loss)} after {ctx.steps} step(s)", None)


class _ContractError(Exception):
    """The learner's code broke the GPT contract in a way that needs a sentence, not a traceback."""


class _NonFinite(Exception):
    def __init__(self, message, where):
        super().__init__(message)
        self.where = where


# ---------------------------------------------------------------------------------------------------------------
# the component experiments: each fills `obs["data"]` and `tensors`


def exp_gpt_init(ctx, obs, tensors):
    fields = getattr(getattr(ctx.mod, "GPTConfig", None), "__dataclass_fields__", None)
    obs["data"]["config_fields"] = ({n: f.default for n, f in fields.items() if isinstance(f.default, (int, float, str))}
                                    if fields else None)
    config = ctx.config()
    hybrid = ctx.hybrid("GPT", {"__init__"})
    with probe.swapped_globals(ctx.mod, **ctx.reference_children("GPT")):
        model = hybrid(config)
    _describe_module(obs, model)
    h = getattr(getattr(model, "transformer", None), "h", None) if hasattr(model, "transformer") else None
    obs["data"]["h_type"] = type(h).__name__ if h is not None else None
    obs["data"]["h_len"] = len(h) if isinstance(h, torch.nn.ModuleList) else None
    obs["data"]["config_kept"] = getattr(model, "config", None) is config
    obs["data"]["rotary_seq_len"] = getattr(model, "rotary_seq_len", None)


def _describe_module(obs, module):
    obs["data"]["params"] = {n: list(p.shape) for n, p in module.named_parameters()}
    state = module.state_dict()
    obs["data"]["state_keys"] = list(state.keys())
    obs["data"]["buffers"] = {n: {"shape": list(b.shape), "dtype": str(b.dtype).replace("torch.", ""),
                                  "persistent": n in state} for n, b in module.named_buffers()}


def exp_precompute(ctx, obs, tensors):
    obj, how = ctx.isolated("GPT", {"_precompute_rotary_embeddings"}, (ctx.config(),), ctx.ref.model, ctx.ref.weights)
    obs["isolation"] = how
    out = obj._precompute_rotary_embeddings(*ctx.ref.rotary_args)
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise _ContractError("_precompute_rotary_embeddings must return a pair of tensors (cos, sin)")
    tensors["cos"], tensors["sin"] = out[0], out[1]


def exp_block_init(ctx, obs, tensors):
    hybrid = ctx.hybrid("Block", {"__init__"})
    with probe.swapped_globals(ctx.mod, **ctx.reference_children("Block")):
        block = hybrid(ctx.config(), ISOLATED_LAYER)
    _describe_module(obs, block)
    obs["data"]["children"] = {n: type(m).__name__ for n, m in block.named_children()}


def exp_attn_init(ctx, obs, tensors):
    shapes = {}
    cls = ctx.learner_class("CausalSelfAttention")
    shapes["depth4"] = {n: list(p.shape) for n, p in cls(ctx.config(), 0).named_parameters()}
    for name, case in ctx.ref.shared_kv_cases.items():
        shapes[name] = {n: list(p.shape) for n, p in cls(ctx.config(**case["config"]), 0).named_parameters()}
    obs["data"]["shapes"] = shapes


def exp_mlp_init(ctx, obs, tensors):
    cls = ctx.learner_class("MLP")
    obs["data"]["params"] = {n: list(p.shape) for n, p in cls(ctx.config()).named_parameters()}


def exp_init_weights(ctx, obs, tensors):
    obj, how = ctx.isolated("GPT", {"init_weights"}, (ctx.config(),), ctx.ref.model, ctx.ref.weights, mutable=True)
    obs["isolation"] = how
    torch.manual_seed(SEED)
    obj.init_weights()
    for n, p in obj.named_parameters():
        tensors["param:" + n] = p.detach()
    for n in ("cos", "sin"):
        if isinstance(getattr(obj, n, None), torch.Tensor):
            tensors["buffer:" + n] = getattr(obj, n)


def exp_init_rule(ctx, obs, tensors):
    obj, how = ctx.isolated("GPT", {"_init_weights"}, (ctx.config(),), ctx.ref.model, ctx.ref.weights, mutable=True)
    obs["isolation"] = how
    torch.manual_seed(SEED)
    for module in list(obj.modules()):
        obj._init_weights(module)
    for n, p in obj.named_parameters():
        tensors["param:" + n] = p.detach()


def exp_norm(ctx, obs, tensors):
    fn = getattr(ctx.mod, "norm", None)
    if not callable(fn):
        raise Skip("your file defines no function norm")
    for i, (x, expected) in enumerate(ctx.ref.norm_cases):
        out = fn(x.clone())
        tensors[f"out{i}"] = _as_tensor(out, "norm")
        if _differs(out, expected, 1e-5):
            tensors[f"out{i}@64"] = fn(x.double())


def exp_rotary(ctx, obs, tensors):
    fn = getattr(ctx.mod, "apply_rotary_emb", None)
    if not callable(fn):
        raise Skip("your file defines no function apply_rotary_emb")
    for i, (x, cos, sin, expected) in enumerate(ctx.ref.rotary_cases):
        out = fn(x.clone(), cos.clone(), sin.clone())
        tensors[f"out{i}"] = _as_tensor(out, "apply_rotary_emb")
        if _differs(out, expected, 1e-5):
            tensors[f"out{i}@64"] = fn(x.double(), cos.double(), sin.double())


def _as_tensor(out, what):
    if not isinstance(out, torch.Tensor):
        raise _ContractError(f"{what} returned {type(out).__name__}, not a tensor")
    return out


def _run_isolated(ctx, obj, args, expected, tol, tensors, key):
    """Call an isolated learner module with reference functions lent to its globals; float64 too if it differs."""
    with probe.swapped_globals(ctx.mod, **ctx.reference_functions()), torch.no_grad():
        out = obj(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        tensors[key] = _as_tensor(out, type(obj).__name__ + ".forward")
        if _differs(out, expected, tol):
            obj64 = module_float64(obj)
            tensors[key + "@64"] = obj64(*[to_float64(a) for a in args])
    return out


def exp_attn_forward(ctx, obs, tensors):
    ref, L = ctx.ref, ISOLATED_LAYER
    obj, how = ctx.isolated("CausalSelfAttention", {"forward"}, (ctx.config(), L), ref.model.transformer.h[L].attn,
                            _state(f"transformer.h.{L}.attn.", ref.weights))
    obs["isolation"] = how
    _run_isolated(ctx, obj.eval(), (ref.acts["attn_in"], ref.acts["cos_sin"], None), ref.acts["attn_out"], 1e-4,
                  tensors, "out")
    for name, case in ref.shared_kv_cases.items():
        obj, _ = ctx.isolated("CausalSelfAttention", {"forward"}, (ctx.config(**case["config"]), 0), case["module"],
                              case["module"].state_dict())
        _run_isolated(ctx, obj.eval(), (case["x"], case["cos_sin"], None), case["out"], 1e-4, tensors, "out_" + name)


def exp_mlp_forward(ctx, obs, tensors):
    ref, L = ctx.ref, ISOLATED_LAYER
    obj, how = ctx.isolated("MLP", {"forward"}, (ctx.config(),), ref.model.transformer.h[L].mlp,
                            _state(f"transformer.h.{L}.mlp.", ref.weights))
    obs["isolation"] = how
    _run_isolated(ctx, obj.eval(), (ref.acts["mlp_in"],), ref.acts["mlp_out"], 1e-4, tensors, "out")


def exp_block_forward(ctx, obs, tensors):
    ref, L = ctx.ref, ISOLATED_LAYER
    obj, how = ctx.isolated("Block", {"forward"}, (ctx.config(), L), ref.model.transformer.h[L],
                            _state(f"transformer.h.{L}.", ref.weights))
    obs["isolation"] = how
    _run_isolated(ctx, obj.eval(), (ref.acts["block_in"], ref.acts["cos_sin"], None), ref.acts["block_out"], 1e-4,
                  tensors, "out")


def exp_gpt_forward(ctx, obs, tensors):
    ref = ctx.ref
    obj, how = ctx.isolated("GPT", {"forward"}, (ctx.config(),), ref.model, ref.weights)
    obs["isolation"] = how
    obs["data"]["table_dtype"] = own_tables(ctx, obj)
    obj.eval()
    idx, tgt = ref.inputs[:, :LOGITS_T], ref.targets[:, :LOGITS_T]
    with probe.swapped_globals(ctx.mod, **ctx.reference_functions()), torch.no_grad():
        logits = _as_tensor(obj(idx.clone()), "GPT.forward(idx)")
        tensors["logits"] = logits
        tensors["loss"] = _as_tensor(obj(idx.clone(), tgt.clone()), "GPT.forward(idx, targets)")
        tensors["loss_none"] = _as_tensor(obj(idx.clone(), tgt.clone(), loss_reduction="none"),
                                          "GPT.forward(idx, targets, loss_reduction='none')")
        if _differs(logits, ref.logits, 1e-4) or _differs(tensors["loss"], ref.loss_none.mean(), 1e-4):
            obj64 = module_float64(obj)
            tensors["logits@64"] = obj64(idx.clone())
            tensors["loss@64"] = obj64(idx.clone(), tgt.clone())


def own_gpt(ctx):
    """The learner's GPT as its own __init__ builds it (once per run), or None when that raises."""
    if ctx.own_gpt is None:
        try:
            with torch.random.fork_rng():
                ctx.own_gpt = ctx.mod.GPT(ctx.config())
        except Exception:
            ctx.own_gpt = False
    return ctx.own_gpt or None


def own_tables(ctx, gpt, keep_wrong: bool = False) -> str:
    """Give a GPT the reference's rotary tables in the dtype the learner's own GPT keeps them in (float32 when
    that is unknown), so its forward never gets tables its own module would not make (nanochat's late-2025 code
    keeps them in bfloat16 and asserts it); the judge compares with the reference run on the very same tables.
    `keep_wrong` (the whole model, which runs the learner's own tables): tables further from the reference's
    than their dtype's rounding are left in place, so a wrong table still shows. Returns the dtype's name."""
    cos = getattr(own_gpt(ctx), "cos", None)
    dtype = cos.dtype if isinstance(cos, torch.Tensor) and cos.is_floating_point() else torch.float32
    if dtype != ctx.ref.rotary[0].dtype:
        tables = [t.to(dtype) for t in ctx.ref.rotary]
        own = (getattr(gpt, "cos", None), getattr(gpt, "sin", None))
        if keep_wrong and not all(isinstance(o, torch.Tensor) and o.shape == t.shape and o.dtype == dtype and
                                  float((o.double() - t.double()).abs().max()) <= torch.finfo(dtype).eps
                                  for o, t in zip(own, tables)):
            return str(dtype).replace("torch.", "")
        gpt.cos, gpt.sin = tables
    return str(dtype).replace("torch.", "")


def whole_model(ctx):
    """The learner's own GPT (every method theirs) carrying the shared weights; built once per run."""
    if ctx.whole_model is None:
        model = own_gpt(ctx)
        if model is None:  # its __init__ raised: raise it again, here, for the row
            with torch.random.fork_rng():
                model = ctx.mod.GPT(ctx.config())
        keys = list(model.state_dict().keys())
        if sorted(keys) != sorted(ctx.ref.state_keys):
            raise Skip("your model's parameter names differ from the reference's (see GPT.__init__), so the "
                       "reference's weights can't be loaded into it")
        model.load_state_dict(ctx.ref.weights, strict=True)
        own_tables(ctx, model, keep_wrong=True)
        ctx.whole_model = model.eval()
    return ctx.whole_model


def exp_whole_model(ctx, obs, tensors):
    ref = ctx.ref
    model = whole_model(ctx)
    obs["data"]["table_dtype"] = own_tables(ctx, model, keep_wrong=True)
    model.zero_grad(set_to_none=True)
    idx, tgt = ref.inputs[:, :LOGITS_T].clone(), ref.targets[:, :LOGITS_T].clone()
    recorder = probe.ShapeRecorder(model, ctx.mod)
    with recorder:
        loss = model(idx, tgt)
    obs["data"]["first_nonfinite"] = recorder.first_nonfinite
    tensors["loss"] = _as_tensor(loss, "GPT.forward(idx, targets)")
    loss.backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            tensors["grad:" + n] = p.grad
    obs["data"]["no_grad"] = [n for n, p in model.named_parameters() if p.grad is None]
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        logits = _as_tensor(model(idx), "GPT.forward(idx)")
        tensors["logits"] = logits
        if _differs(logits, ref.logits, 1e-4) or _differs(loss.detach(), ref.loss_none.mean(), 1e-4):
            m64 = module_float64(model)
            tensors["logits@64"] = m64(idx)
            tensors["loss@64"] = m64(idx, tgt)
    if ctx.experiments:
        try:
            reference_with_experiments(ctx, obs, tensors)
        except Exception as e:  # the judge then compares with the plain reference only
            obs["data"]["xref_error"] = f"{type(e).__name__}: {e}"[:300]


# ---------------------------------------------------------------------------------------------------------------
# experiments: the reference with the learner's experiments in place, and the learner's model trained


def experiment_globals(ctx) -> contextlib.ExitStack:
    """Globals for reference code running the learner's experiments: the learner's module is lent the reference's
    norm / apply_rotary_emb except those that are experiments, and nanochat.gpt is lent those."""
    mine = {f: getattr(ctx.mod, f) for f in FUNCTIONS if f in ctx.experiments and callable(getattr(ctx.mod, f, None))}
    lent = {f: getattr(ref_gpt, f) for f in FUNCTIONS if f not in mine}
    stack = contextlib.ExitStack()
    stack.enter_context(probe.swapped_globals(ctx.mod, **lent))
    stack.enter_context(probe.swapped_globals(ref_gpt, **mine))
    return stack


def experimental_reference(ctx):
    """A copy of the reference model (the shared weights) whose experiment methods are the learner's: the model
    the learner's would be if everything but the experiments were the reference's. An __init__ can not be put
    into a model already built, so experiments in constructors are left out."""
    model = copy.deepcopy(ctx.ref.model)
    methods: dict[str, set] = {}
    for qualname in ctx.experiments:
        owner, _, method = qualname.rpartition(".")
        if owner and method != "__init__":
            methods.setdefault(owner, set()).add(method)
    for module in model.modules():
        name = type(module).__name__
        if name in methods:
            module.__class__ = ctx.hybrid(name, methods[name])
    return model


def reference_with_experiments(ctx, obs, tensors):
    """What the whole-model and gradient rows are compared with when the plain reference differs: the reference
    with the learner's experiments in place, on the same prefix ("xref:logits", "xref:loss", "xref:grad:NAME")."""
    ref = ctx.ref
    model = experimental_reference(ctx).eval()
    own_tables(ctx, model)
    idx, tgt = ref.inputs[:, :LOGITS_T].clone(), ref.targets[:, :LOGITS_T].clone()
    with experiment_globals(ctx):
        loss = _as_tensor(model(idx, tgt), "GPT.forward(idx, targets)")
        loss.backward()
        with torch.no_grad():
            tensors["xref:logits"] = _as_tensor(model(idx), "GPT.forward(idx)")
    tensors["xref:loss"] = loss.detach()
    for n, p in model.named_parameters():
        if p.grad is not None:
            tensors["xref:grad:" + n] = p.grad


def _progress(ctx, step):
    ctx.channel.send({"kind": "progress", "step": step})  # the worker watches for a stall (worker.py)


def train_experiment(ctx) -> None:
    """The learner's own model trained on the experiment stream as the worker trains the reference
    (workbench/check/reference.py: same start, same batches, same optimizer unless setup_optimizers or an init
    is an experiment); one `experiment_run` event with the losses, or the reason it could not train."""
    event = {"kind": "experiment_run", "qualnames": ctx.experiments, "losses": [], "final": None,
             "same_start": False, "reason": None}
    try:
        if ctx.mod is None:
            raise Skip("your file did not import")
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            model = ctx.mod.GPT(ctx.config())
            if not {"GPT.init_weights", "GPT._init_weights"} & set(ctx.experiments):
                with contextlib.suppress(Exception):  # other parameter names or shapes: the learner's own init
                    model.load_state_dict(initial_model(ctx.ref.config()).state_dict(), strict=True)
                    event["same_start"] = True
            if not event["same_start"]:
                torch.manual_seed(SEED)
                model.init_weights()
            optimizers = (model.setup_optimizers() if "GPT.setup_optimizers" in ctx.experiments
                          else shared_adamw(model))
            torch.manual_seed(SEED)
            event["losses"], event["final"] = train_curve(model, optimizers, ctx.ref.stream, ctx.ref.held_out,
                                                          functools.partial(_progress, ctx))
    except Skip as e:
        event["reason"] = str(e)
    except BaseException as e:  # the learner's code may raise anything
        info = probe.exception_info(e, ctx.smap)
        where = f" (line {info['line']} in {info['qualname']})" if info.get("line") and info.get("qualname") else ""
        event["reason"] = f"your model could not be trained: {info.get('type')}: {info.get('message')}{where}"
    ctx.channel.send(event)


def exp_get_device(ctx, obs, tensors):
    obj, how = ctx.isolated("GPT", {"get_device"}, (ctx.config(),), ctx.ref.model, ctx.ref.weights)
    device = obj.get_device()
    obs["data"]["device"] = str(device)
    obs["data"]["is_device"] = isinstance(device, torch.device)
    obs["data"]["param_device"] = str(next(obj.parameters()).device)


def exp_setup_optimizers(ctx, obs, tensors):
    obj, how = ctx.isolated("GPT", {"setup_optimizers"}, (ctx.config(),), ctx.ref.model, ctx.ref.weights)
    obs["isolation"] = how
    obs["data"]["default"] = describe_optimizers(_as_list(obj.setup_optimizers()), obj)
    obs["data"]["custom"] = describe_optimizers(_as_list(obj.setup_optimizers(**CUSTOM_LRS)), obj)


def _as_list(optimizers):
    if not isinstance(optimizers, (list, tuple)):
        raise _ContractError(f"setup_optimizers() returned {type(optimizers).__name__}; it must return a list of "
                             f"optimizers, e.g. [adamw, muon]")
    return list(optimizers)


def exp_estimate_flops(ctx, obs, tensors):
    obj, how = ctx.isolated("GPT", {"estimate_flops"}, (ctx.config(),), ctx.ref.model, ctx.ref.weights)
    value = obj.estimate_flops()
    obs["data"]["flops"] = float(value) if isinstance(value, (int, float)) or (
        isinstance(value, torch.Tensor) and value.numel() == 1) else repr(value)[:80]


def exp_generate(ctx, obs, tensors):
    ref = ctx.ref
    obj, how = ctx.isolated("GPT", {"generate"}, (ctx.config(),), ref.model, ref.weights)
    obs["isolation"] = how
    obj.eval()

    def run(n, **kw):
        out = obj.generate(list(ref.prompt), n, **kw)
        tokens = list(itertools.islice(iter(out), n + 1))
        return [int(t) if isinstance(t, int) or (isinstance(t, torch.Tensor) and t.numel() == 1) else repr(t)[:40]
                for t in tokens]

    data = obs["data"]
    data["greedy"] = run(GEN_TOKENS, temperature=0.0)
    data["top_k_1"] = run(2, temperature=1.0, top_k=1)
    data["sample_a"] = run(2, temperature=1.0, seed=7)
    data["sample_b"] = run(2, temperature=1.0, seed=7)
    for key, kw in SAMPLING.items():
        data[key] = run(SAMPLED_TOKENS, **kw)


def exp_kv_cache(ctx, obs, tensors):
    from nanochat.engine import Engine, KVCache

    ref, data = ctx.ref, obs["data"]
    cfg = ref.config_kwargs
    head_dim = cfg["n_embd"] // cfg["n_head"]
    # 1. the learner's attention with a cache, on its own: prefill KV_PREFIX tokens, then one more
    L = ISOLATED_LAYER
    obj, _ = ctx.isolated("CausalSelfAttention", {"forward"}, (ctx.config(), L), ref.model.transformer.h[L].attn,
                          _state(f"transformer.h.{L}.attn.", ref.weights))
    x = ref.acts["attn_in"][:, :KV_PREFIX + 1].clone()
    cos, sin = (t[:, :KV_PREFIX + 1] for t in ref.acts["cos_sin"])
    with probe.swapped_globals(ctx.mod, **ctx.reference_functions()), torch.no_grad():
        tensors["attn_uncached"] = obj.eval()(x, (cos, sin), None)
        cache = KVCache(1, cfg["n_kv_head"], KV_PREFIX + 1, head_dim, L + 1)
        tensors["attn_prefill"] = obj(x[:, :KV_PREFIX], (cos[:, :KV_PREFIX], sin[:, :KV_PREFIX]), cache)
        tensors["attn_step"] = obj(x[:, KV_PREFIX:], (cos[:, KV_PREFIX:], sin[:, KV_PREFIX:]), cache)
    # 2. the learner's GPT.forward with a cache (reference blocks inside): are positions right?
    obj, _ = ctx.isolated("GPT", {"forward"}, (ctx.config(),), ref.model, ref.weights)
    own_tables(ctx, obj)
    ids = torch.tensor([ref.prompt[:KV_PREFIX + 1]])
    with probe.swapped_globals(ctx.mod, **ctx.reference_functions()), torch.no_grad():
        obj.eval()
        tensors["gpt_uncached"] = obj(ids)[:, -1]
        cache = KVCache(1, cfg["n_kv_head"], KV_PREFIX + 1, head_dim, cfg["n_layer"])
        obj(ids[:, :KV_PREFIX], kv_cache=cache)
        tensors["gpt_step"] = obj(ids[:, KV_PREFIX:], kv_cache=cache)[:, -1]
    # 3. the whole learner model through nanochat's Engine, against uncached greedy decoding
    model = whole_model(ctx)
    with torch.no_grad():
        engine_tokens = []
        for column, _ in Engine(model, None).generate(list(ref.prompt), max_tokens=GEN_TOKENS, temperature=0.0):
            engine_tokens.append(int(column[0]))
        ids = torch.tensor([list(ref.prompt)])
        uncached, uncached_logits = [], []
        for _ in range(GEN_TOKENS):
            last = model(ids)[:, -1, :]
            uncached_logits.append(last[0])
            uncached.append(int(last.argmax(-1)))
            ids = torch.cat([ids, torch.tensor([[uncached[-1]]])], dim=1)
        if engine_tokens != uncached:
            # the same tokens fed through the cache one at a time (teacher forcing), to see where logits part
            cache = KVCache(1, cfg["n_kv_head"], PROMPT_LEN + GEN_TOKENS, head_dim, cfg["n_layer"])
            cached_logits = [model(torch.tensor([list(ref.prompt)]), kv_cache=cache)[0, -1]]
            for tok in uncached[:-1]:
                cached_logits.append(model(torch.tensor([[tok]]), kv_cache=cache)[0, -1])
            tensors["cached_logits"] = torch.stack(cached_logits)
            tensors["uncached_logits"] = torch.stack(uncached_logits)
    data["engine_tokens"], data["uncached_tokens"] = engine_tokens, uncached


# qualname -> experiment, in data-flow order (the judge adds the rows that need no experiment of their own)
EXPERIMENTS = (
    ("GPT.__init__", exp_gpt_init),
    ("GPT._precompute_rotary_embeddings", exp_precompute),
    ("Block.__init__", exp_block_init),
    ("CausalSelfAttention.__init__", exp_attn_init),
    ("MLP.__init__", exp_mlp_init),
    ("GPT.init_weights", exp_init_weights),
    ("GPT._init_weights", exp_init_rule),
    ("norm", exp_norm),
    ("apply_rotary_emb", exp_rotary),
    ("CausalSelfAttention.forward", exp_attn_forward),
    ("MLP.forward", exp_mlp_forward),
    ("Block.forward", exp_block_forward),
    ("GPT.forward", exp_gpt_forward),
    ("GPT (whole model)", exp_whole_model),
    ("GPT.setup_optimizers", exp_setup_optimizers),
    ("GPT.get_device", exp_get_device),
    ("GPT.estimate_flops", exp_estimate_flops),
    ("GPT.generate", exp_generate),
    ("KV-cache decoding", exp_kv_cache),
)


def untouched_stub(ctx: Context, qualname: str):
    """(message, line) if the learner's method is still the skeleton's stub: no need to run anything to know
    it raises NotImplementedError (the untouched skeleton is then checked in a few milliseconds)."""
    if qualname not in ALL_METHODS:
        return None
    owner, _, method = qualname.rpartition(".")
    if owner:
        cls = getattr(ctx.mod, owner, None)
        fn = cls.__dict__.get(method) if isinstance(cls, type) else None
    else:
        fn = getattr(ctx.mod, method, None)
    return ctx.smap.stub(fn)


def run_experiment(ctx: Context, qualname: str, fn) -> None:
    ctx.channel.send({"kind": "experiment_start", "qualname": qualname})
    obs = {"kind": "experiment", "qualname": qualname, "status": Outcome.RAN, "data": {}, "isolation": None}
    tensors = {}
    started = time.perf_counter()
    torch.manual_seed(SEED)
    try:
        if ctx.mod is None:
            raise Skip("your file did not import")
        borrowed = ownership.borrowed_for(qualname, ctx.borrowed)
        if borrowed:
            raise _ContractError(borrowed)
        stub = untouched_stub(ctx, qualname)
        if stub is not None:
            message, line = stub
            obs["status"] = Outcome.TODO
            obs["exception"] = {"type": "NotImplementedError", "message": message or "TODO", "file": ctx.path,
                                "line": line, "qualname": qualname, "traceback": "", "out_of_memory": False}
            obs["seconds"] = round(time.perf_counter() - started, 4)
            ctx.channel.send(obs)
            return
        fn(ctx, obs, tensors)
    except Skip as e:
        obs["status"], obs["reason"] = Outcome.SKIPPED, str(e)
    except BaseException as e:
        info = probe.exception_info(e, ctx.smap)
        if isinstance(e, _ContractError):
            info.update(traceback="")
        obs["exception"] = info
        if probe.is_todo(e, ctx.path):
            obs["status"] = Outcome.TODO if info["qualname"] == qualname else Outcome.WAITS
        else:
            obs["status"] = Outcome.ERROR
        tensors = {}
    obs["seconds"] = round(time.perf_counter() - started, 4)
    try:
        ctx.channel.send(obs, tensors)
    except Exception as e:  # a tensor the learner's code returned that can't be saved, say
        obs["status"], obs["reason"] = Outcome.ERROR, f"could not record the result: {e}"
        ctx.channel.send({k: v for k, v in obs.items() if k != "tensor_file"})


def run(path: str, ref, channel: Channel, steps: int, experiments=()) -> None:
    """Everything the child does: the pipeline, then every component's experiment, then (when the file has
    methods marked as experiments, or `experiments` names some) the training side by side, then a final event."""
    ctx = Context(path, ref, channel, steps, experiments)
    run_pipeline(ctx)
    for qualname, fn in EXPERIMENTS:
        run_experiment(ctx, qualname, fn)
    if ctx.experiments:
        train_experiment(ctx)
    channel.send({"kind": "end"})


def internal_error(channel: Channel, exc: BaseException) -> None:
    """A bug in the workbench itself, reported as such."""
    channel.send({"kind": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                  "traceback": "".join(traceback.format_exception(exc))})

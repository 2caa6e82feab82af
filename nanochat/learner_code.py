"""What a training run takes from the learner's own files beyond the GPT: `--optimizer`, `--dataloader`,
`--training`, each a drop-in for a reference module (as `--model` is for nanochat/gpt.py).

- `--optimizer FILE` (repeatable): a copy of nanochat/muon.py (it defines `Muon`) and/or of nanochat/adamw.py
  (it defines `AdamW`), recognised by the names the file defines. The model's `setup_optimizers` still
  decides which parameters go to which optimizer and with which learning rates; the optimizer it built is then
  rebuilt from the learner's class over the same parameters and settings. Under torchrun: the learner's
  `DistMuon`, and the learner's `AdamW` behind `GradientAveraging` (the gradients averaged over the ranks
  first, as DistAdamW does for torch's). A learner's optimizer is never swapped for torch's fused kernel.
- `--dataloader FILE`: its `tokenizing_distributed_data_loader_with_state` (training batches, resumable) and
  `tokenizing_distributed_data_loader` (validation batches).
- `--training FILE`: its `lr_multiplier`, `muon_momentum`, `accumulate_gradients` and `optimizer_step` (the
  schedule and the step); the plumbing around them (devices, Ctrl-C, metrics) stays nanochat/training.py's.

Loading goes through `nanochat.model_source.load_learner`: a missing or broken file, or one still holding a
skeleton TODO, is a one-line `LearnerFileError` before anything is built.
"""

import dataclasses
import inspect
from types import ModuleType

import torch
import torch.distributed as dist

from nanochat import model_source
from nanochat.model_source import ADAMW, DATALOADER, MUON, TRAINING, LearnerFileError, load_learner


@dataclasses.dataclass
class LearnerCode:
    """The modules a run calls: the learner's where a flag named a file, the reference's otherwise."""
    training: ModuleType  # lr_multiplier, muon_momentum, accumulate_gradients, optimizer_step
    dataloader: ModuleType  # tokenizing_distributed_data_loader(_with_state)
    muon: ModuleType | None = None  # the learner's Muon/DistMuon; None: the model's own choice
    adamw: ModuleType | None = None  # the learner's AdamW; None: the model's choice
    files: dict = dataclasses.field(default_factory=dict)  # what each flag named, for the banner


def add_flags(group, dataloader: bool = True) -> None:
    """--optimizer/--dataloader/--training on an argparse group (the post-training stages read conversations,
    not the pretraining loader: they pass dataloader=False)."""
    group.add_argument("--optimizer", action="append", default=[], metavar="FILE",
                       help="your copy of nanochat/muon.py and/or nanochat/adamw.py (repeat the flag for both); "
                            "recognised by the names it defines")
    if dataloader:
        group.add_argument("--dataloader", default=None, metavar="FILE", help="your copy of nanochat/dataloader.py")
    group.add_argument("--training", default=None, metavar="FILE",
                       help="your copy of nanochat/training.py (its schedule and optimizer step)")


def load(args) -> LearnerCode:
    """The modules named by the flags in `args` (reference modules where none is named; an `args` without a
    --dataloader flag gets the reference's)."""
    loader_path = getattr(args, "dataloader", None)
    code = LearnerCode(training=load_learner(args.training, TRAINING), dataloader=load_learner(loader_path, DATALOADER))
    for flag, path in (("--training", args.training), ("--dataloader", loader_path)):
        if path is not None:
            code.files[flag] = model_source.canonical(path)
    for path in args.optimizer:
        names = model_source.top_level_names(path)
        kinds = [k for k in (MUON, ADAMW) if names is not None and k.defined_by(names)]
        if names is not None and not kinds:
            raise LearnerFileError(f"--optimizer {model_source.canonical(path)} defines neither Muon (a copy of "
                                   f"nanochat/muon.py) nor AdamW (a copy of nanochat/adamw.py)")
        if not kinds:
            kinds = [MUON]  # the loader says what is wrong: no such file, a syntax error
        for kind in kinds:
            module = load_learner(path, kind)
            attr = "muon" if kind is MUON else "adamw"
            if getattr(code, attr) is not None:
                raise LearnerFileError(f"--optimizer {path}: a second {kind.reference_file} (the first was "
                                       f"{getattr(code, attr).__file__}); pass one file per optimizer")
            setattr(code, attr, module)
        code.files.setdefault("--optimizer", []).append(model_source.canonical(path))
    return code


def describe(code: LearnerCode) -> str | None:
    """One line naming the learner files in use, or None when everything is the reference's."""
    if not code.files:
        return None
    parts = [f"{flag} {', '.join(paths) if isinstance(paths, list) else paths}" for flag, paths in code.files.items()]
    return "your code: " + " | ".join(parts)


def with_learner_optimizers(optimizers: list, code: LearnerCode, ddp: bool) -> list:
    """[adamw, muon] from the model's setup_optimizers, each rebuilt from the learner's class where
    --optimizer named one (same parameters, groups and hyperparameters)."""
    adamw, muon = optimizers
    if code.muon is not None:
        muon = _rebuild_muon(muon, _optimizer_class(code.muon, "DistMuon" if ddp else "Muon"))
    if code.adamw is not None:
        cls = _optimizer_class(code.adamw, "AdamW")
        if ddp:
            cls = type(f"Dist{cls.__name__}", (GradientAveraging, cls), {})
        adamw = _rebuild_adamw(adamw, cls)
    return [adamw, muon]


class GradientAveraging:
    """Put before an optimizer class (`type("DistAdamW", (GradientAveraging, AdamW), {})`): each step first
    averages every parameter's gradient over the ranks (a missing gradient counts as zeros), then takes the
    optimizer's own step, so all ranks make the same update."""

    @torch.no_grad()
    def step(self, closure=None):
        grads = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        for handle in [dist.all_reduce(g, op=dist.ReduceOp.SUM, async_op=True) for g in grads]:
            handle.wait()  # SUM then divide: gloo (cpu) has no AVG
        torch._foreach_div_(grads, dist.get_world_size())
        return super().step(closure)


def _optimizer_class(module: ModuleType, name: str):
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise LearnerFileError(f"{module.__file__} does not define {name} as a class, which "
                               f"{'torchrun' if name.startswith('Dist') else 'training'} needs")
    return cls


def _accepted(cls, settings: dict) -> dict:
    """The settings `cls.__init__` takes by name (fused/foreach left to the class)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in settings.items() if k in params and k not in ("fused", "foreach")}


def _rebuild_muon(reference, cls):
    """Muon takes a flat list of matrices and groups them itself; the schedule's initial_lr is carried over."""
    params = [p for group in reference.param_groups for p in group["params"]]
    optimizer = cls(params, **_accepted(cls, reference.defaults))
    _carry_initial_lr(reference, optimizer)
    return optimizer


def _rebuild_adamw(reference, cls):
    """AdamW keeps the reference's parameter groups (their lr, initial_lr, ...) as they are."""
    groups = [{k: v for k, v in group.items() if k not in ("fused", "foreach")} for group in reference.param_groups]
    optimizer = cls(groups, **_accepted(cls, reference.defaults))
    _carry_initial_lr(reference, optimizer)
    return optimizer


def _carry_initial_lr(reference, optimizer) -> None:
    """Every group of `optimizer` gets lr/initial_lr of the reference group that held its first parameter."""
    owner = {id(p): group for group in reference.param_groups for p in group["params"]}
    for group in optimizer.param_groups:
        if group["params"]:
            source = owner[id(group["params"][0])]
            group["lr"] = source["lr"]
            group["initial_lr"] = source.get("initial_lr", source["lr"])

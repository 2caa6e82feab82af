"""Is the code under check the learner's own? A pass must mean the learner's file did the work.

`from nanochat.gpt import *` as the learner file, or a skeleton that re-binds names at its end
(`from nanochat.gpt import GPT`, `GPT.forward = nanochat.gpt.GPT.forward`, a class that inherits the reference's
methods), would otherwise run the reference under the learner's name and pass. `borrowed(module, path)` names
every contract class, function and method (workbench/course/phases.py) that is not defined in the learner's file,
with the plain sentence the check reports for it: "GPT is nanochat's reference, not yours".

A method the learner's class does not define at all (it falls through to torch.nn.Module or object) is not
borrowed: running it fails on its own, as a missing method.
"""

import inspect
import os

import torch

import nanochat
import workbench
from nanochat import gpt as ref_gpt
from workbench.course.phases import ALL_METHODS

CLASSES = ("GPT", "GPTConfig", "Block", "CausalSelfAttention", "MLP")
FUNCTIONS = ("norm", "apply_rotary_emb")
_PACKAGES = tuple(os.path.dirname(os.path.abspath(p.__file__)) + os.sep for p in (nanochat, workbench))
_BASES = (torch.nn.Module, object)  # what an undefined method falls through to


def _code_file(obj) -> str | None:
    """The file a function (or method, static/class method, wrapped function) was compiled from."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    try:
        obj = inspect.unwrap(obj)
    except ValueError:
        return None
    code = getattr(obj, "__code__", None)
    return os.path.abspath(code.co_filename) if code is not None else None


def _whose(file: str | None, path: str, what: str) -> str | None:
    """None when `file` is the learner's file; otherwise the sentence saying whose `what` is."""
    if file == path:
        return None
    if file is None:
        return f"{what} is not a Python function of your file"
    if file.startswith(_PACKAGES):
        return f"{what} is nanochat's reference, not yours"
    return f"{what} is defined in {file}, not in {os.path.basename(path)}: the check grades the code in your file"


def _class_origin(cls, module, path: str, name: str) -> str | None:
    if cls is getattr(ref_gpt, name, None) or getattr(cls, "__module__", None) != module.__name__:
        where = getattr(cls, "__module__", "?")
        if cls is getattr(ref_gpt, name, None) or str(where).startswith(("nanochat", "workbench")):
            return f"{name} is nanochat's reference, not yours"
        return f"{name} comes from {where}, not from {os.path.basename(path)}: the check grades the code in your file"
    return None


def _method(cls, method: str):
    """The method `cls` really runs for `method` (through its bases), or None when only nn.Module/object has it."""
    for klass in cls.__mro__:
        if klass in _BASES:
            return None
        if method in vars(klass):
            return vars(klass)[method]
    return None


def borrowed(module, path: str) -> dict[str, str]:
    """{name or qualname: why it is not the learner's} for the contract objects in the learner's `module`, loaded
    from `path`. Empty when every class, function and method the check grades is defined in that file."""
    path = os.path.abspath(path)
    found: dict[str, str] = {}
    for name in CLASSES:
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            why = _class_origin(cls, module, path, name)
            if why:
                found[name] = why
    for name in FUNCTIONS:
        fn = getattr(module, name, None)
        if fn is not None and callable(fn):
            why = _whose(_code_file(fn), path, name)
            if why:
                found[name] = why
    for qualname in ALL_METHODS:
        owner, _, method = qualname.rpartition(".")
        cls = getattr(module, owner, None) if owner else None
        if not isinstance(cls, type) or owner in found:
            continue
        fn = _method(cls, method)
        if fn is not None:
            why = _whose(_code_file(fn), path, qualname)
            if why:
                found[qualname] = why
    return found


def borrowed_for(qualname: str, found: dict[str, str]) -> str | None:
    """Why the component `qualname` cannot be graded as the learner's: its own entry, its class's, or (for a
    component of the whole model, like "KV-cache decoding") the first borrowed object at all."""
    if not found:
        return None
    owner = qualname.partition(".")[0]
    if qualname in found:
        return found[qualname]
    if owner in found:
        return found[owner]
    if qualname in ALL_METHODS:
        return None
    return next(iter(found.values()))


def summary(found: dict[str, str]) -> str:
    """One line for the whole file: the first reason, and how many more names are not the learner's."""
    reasons = list(found.values())
    more = f" (and {len(reasons) - 1} more: {', '.join(list(found)[1:])})" if len(reasons) > 1 else ""
    return reasons[0] + more

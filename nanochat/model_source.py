"""Where the GPT class comes from: the reference model (`nanochat.gpt`) or a learner's own file.

Every place that builds a model (training, loss eval, checkpoint loading, the engine, chat) takes a `--model`
option and hands it to `load_model_module`. "reference" means `nanochat.gpt`; anything else is a path to a
Python file that defines the same names (`GPT`, `GPTConfig`, ...). A learner file is imported fresh on every
call, under a module name of its own, so an edited file is picked up without restarting anything and two
versions of it never share state.

A checkpoint records the model file it was trained with (`model_source` in its meta). Checkpoints travel (pulled
from a remote run, shared by a friend), so a file named only by a checkpoint is run only when it lies inside the
current directory (the learner's workspace) or a directory the caller vouches for; anything else needs an
explicit `--model`. `checkpoint_model_source` decides, and says which file it runs.

Every way a learner file can fail to load (missing, a syntax error, an exception while importing, the
required names absent) becomes a `ModelSourceError` whose message says which file, which line and what to do.
"""

import importlib
import importlib.util
import itertools
import os
import sys
import traceback

REFERENCE = "reference"
REQUIRED_NAMES = ("GPT", "GPTConfig")

_counter = itertools.count()


class ModelSourceError(Exception):
    """The model source named by `--model` cannot be used; the message says why and where."""


def is_reference(source) -> bool:
    return source is None or str(source).strip() in ("", REFERENCE)


def canonical(source) -> str:
    """What to store in checkpoint metadata: "reference", or the learner file's absolute path."""
    if is_reference(source):
        return REFERENCE
    return os.path.abspath(os.path.expanduser(str(source)))


def describe(source) -> str:
    """A short human description, e.g. for a banner: "reference GPT (nanochat.gpt)"."""
    if is_reference(source):
        return "reference GPT (nanochat.gpt)"
    return f"learner GPT from {canonical(source)}"


def is_inside(path: str, directory: str) -> bool:
    """True when `path` (symlinks resolved) is `directory` or lies below it."""
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def checkpoint_model_source(saved, named_by: str, trusted_dirs=None) -> str:
    """The model source a checkpoint's meta names (`saved`), if it may be run without the user's say.

    "reference" always may. A file may when it lies inside the current directory or one of `trusted_dirs`
    (e.g. the workspace the workbench opened); then which file runs is printed on stderr. Otherwise a
    ModelSourceError says which checkpoint named which file and how to run it anyway (--model PATH).
    """
    if saved is None or is_reference(saved):
        return REFERENCE
    if not isinstance(saved, str):
        raise ModelSourceError(f"{named_by}: model_source is {saved!r}, not a path; pass --model reference or "
                               f"--model PATH")
    path = canonical(saved)
    roots = [os.getcwd(), *(trusted_dirs or [])]
    if not any(is_inside(path, root) for root in roots):
        real = os.path.realpath(path)
        shown = path if real == path else f"{path} (a link to {real})"
        raise ModelSourceError(
            f"{named_by} names the model file {shown}, which is outside {roots[0]}; code named by a checkpoint is "
            f"only run from inside the current directory. If you trust that file, pass --model {path} "
            f"(or --model reference to load the weights into nanochat's GPT)")
    print(f"model code: {path} (named by {named_by})", file=sys.stderr)
    return path


def load_model_module(source=REFERENCE):
    """Return the module that defines `GPT` and `GPTConfig` for `source` ("reference" or a .py path)."""
    if is_reference(source):
        return importlib.import_module("nanochat.gpt")
    path = canonical(source)
    if not os.path.exists(path):
        raise ModelSourceError(f"model file {path} does not exist; pass --model reference or the path of your gpt.py")
    if os.path.isdir(path):
        raise ModelSourceError(f"--model {path} is a directory; pass the path of a .py file that defines GPT and GPTConfig")
    if not path.endswith(".py"):
        raise ModelSourceError(f"--model {path} is not a .py file; pass the path of a Python file that defines GPT and GPTConfig")

    stem = "".join(ch if ch.isalnum() else "_" for ch in os.path.splitext(os.path.basename(path))[0])
    module_name = f"nanochat_learner_{stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"cannot import {path}: Python does not recognise it as a module file")
    module = importlib.util.module_from_spec(spec)
    # registered before running it: @dataclass and pickling look classes up through sys.modules
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[module_name]
        where = f"{e.filename or path}:{e.lineno}" if e.lineno else (e.filename or path)
        detail = f"\n    {e.text.rstrip()}" if e.text else ""
        raise ModelSourceError(f"{where}: syntax error: {e.msg}{detail}") from None
    except Exception as e:
        del sys.modules[module_name]
        raise ModelSourceError(
            f"{_innermost_location(e, path)}: importing the model file failed with {type(e).__name__}: {e}"
        ) from None
    missing = [name for name in REQUIRED_NAMES if not isinstance(getattr(module, name, None), type)]
    if missing:
        del sys.modules[module_name]
        raise ModelSourceError(f"{path} does not define {' and '.join(missing)} as a class; a model file must define "
                               f"{', '.join(REQUIRED_NAMES)} with the same names as nanochat/gpt.py")
    return module


def _innermost_location(exc: BaseException, path: str) -> str:
    """file:line of the deepest frame inside the learner's file (where the error happened, from their view)."""
    where = path
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == path:
            where = f"{path}:{frame.lineno}"
    return where

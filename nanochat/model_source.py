"""Where the code comes from: the reference modules (`nanochat.gpt`, `nanochat.muon`, ...) or a learner's own files.

Every place that builds a model (training, loss eval, checkpoint loading, the engine, chat) takes a `--model`
option and hands it to `load_model_module`. "reference" means `nanochat.gpt`; anything else is a path to a
Python file that defines the same names (`GPT`, `GPTConfig`, ...). A learner file is imported fresh on every
call, under a module name of its own, so an edited file is picked up without restarting anything and two
versions of it never share state.

A checkpoint records the model file it was trained with (`model_source` in its meta). Checkpoints travel (pulled
from a remote run, shared by a friend), so a file named only by a checkpoint is run only when it lies inside the
current directory (the learner's workspace) or a directory the caller vouches for; anything else needs an
explicit `--model`. `checkpoint_model_source` decides, and says which file it runs.

The same loader serves every learner file that stands in for a reference module: a `LearnerKind` names the
flag, the reference module and the names the file must define (MODEL for `--model`; MUON and ADAMW for
`--optimizer`, DATALOADER for `--dataloader`, TRAINING for `--training`), and `load_learner(source, kind)`
returns the module. Every way a learner file can fail to load (missing, a syntax error, an exception while
importing, the required names absent, for the kinds beyond the model a skeleton's TODO raise
still in it) becomes a `LearnerFileError` (alias `ModelSourceError`) whose message says which file, which line
and what to do. `learner_failure(exc)` turns an exception raised later inside a loaded learner file into one
line naming the file, line and function, so scripts report a learner's crash without a traceback wall.
"""

import ast
import dataclasses
import importlib
import importlib.util
import itertools
import os
import sys
import traceback

REFERENCE = "reference"
REQUIRED_NAMES = ("GPT", "GPTConfig")
LEARNER_MODULE_PREFIX = "nanochat_learner_"

_counter = itertools.count()
_loaded_paths: set = set()  # absolute paths of the learner files this process imported (see learner_failure)


class LearnerFileError(Exception):
    """A learner file named by a flag (--model, --optimizer, ...) cannot be used; the message says why and where."""


ModelSourceError = LearnerFileError  # the name every --model caller catches


# ---------------------------------------------------------------------------------------------------------------
# the kinds of learner file the scripts take

@dataclasses.dataclass(frozen=True)
class LearnerKind:
    """One kind of learner file: the flag that takes it, the reference module it is a drop-in for, and the
    names it must define. `allow_todos`: a file still holding TODOs may load (they surface when called)."""
    flag: str
    reference: str
    classes: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    allow_todos: bool = False

    @property
    def reference_file(self) -> str:
        return self.reference.replace(".", "/") + ".py"

    def defined_by(self, names: set) -> bool:
        """True when a file defining `names` (top level) defines everything this kind needs."""
        return set(self.classes + self.functions) <= names


MODEL = LearnerKind("--model", "nanochat.gpt", classes=("GPT", "GPTConfig"), allow_todos=True)
MUON = LearnerKind("--optimizer", "nanochat.muon", classes=("Muon",))
ADAMW = LearnerKind("--optimizer", "nanochat.adamw", classes=("AdamW",))
DATALOADER = LearnerKind("--dataloader", "nanochat.dataloader", functions=(
    "tokenizing_distributed_data_loader_with_state", "tokenizing_distributed_data_loader"))
TRAINING = LearnerKind("--training", "nanochat.training", functions=(
    "lr_multiplier", "muon_momentum", "accumulate_gradients", "optimizer_step"))
ENGINE = LearnerKind("--engine", "nanochat.engine", classes=("Engine", "KVCache"), functions=("sample_next_token",))


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
    return load_learner(source, MODEL)


def load_learner(source, kind: "LearnerKind"):
    """The module standing in for `kind.reference`: that module itself for "reference" (or None), else the
    learner's file imported fresh. Every way the file can fail to load raises LearnerFileError."""
    if is_reference(source):
        return importlib.import_module(kind.reference)
    path = canonical(source)
    _check_path(path, kind)
    if not kind.allow_todos:
        first = next(iter(todos_in(path)), None)
        if first is not None:
            raise LearnerFileError(f"{path}:{first.line}: {first.qualname} is still a TODO ({first.message}); write "
                                   f"it (nanochat-workbench check {os.path.basename(path)} says what is left) or "
                                   f"leave out {kind.flag}")
    module = _import_file(path)
    missing_classes = [n for n in kind.classes if not isinstance(getattr(module, n, None), type)]
    missing_functions = [n for n in kind.functions if not callable(getattr(module, n, None))]
    if missing_classes or missing_functions:
        del sys.modules[module.__name__]
        missing = " and ".join(
            ([f"{' and '.join(missing_classes)} as a class"] if missing_classes else [])
            + ([f"{', '.join(missing_functions)} as function(s)"] if missing_functions else []))
        raise LearnerFileError(f"{path} does not define {missing}; {kind.flag} takes a file that defines "
                               f"{', '.join(kind.classes + kind.functions)} with the same names as "
                               f"{kind.reference_file}")
    return module


def _check_path(path: str, kind: "LearnerKind") -> None:
    names = ", ".join(kind.classes + kind.functions)
    if not os.path.exists(path):
        raise LearnerFileError(f"{kind.flag} {path} does not exist; pass the path of your own {kind.reference_file}")
    if os.path.isdir(path):
        raise LearnerFileError(f"{kind.flag} {path} is a directory; pass the path of a .py file that defines {names}")
    if not path.endswith(".py"):
        raise LearnerFileError(f"{kind.flag} {path} is not a .py file; pass the path of a Python file that defines "
                               f"{names}")


def _import_file(path: str):
    """Execute the file as a fresh module of its own name; a syntax error or a crash becomes LearnerFileError."""
    stem = "".join(ch if ch.isalnum() else "_" for ch in os.path.splitext(os.path.basename(path))[0])
    module_name = f"{LEARNER_MODULE_PREFIX}{stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LearnerFileError(f"cannot import {path}: Python does not recognise it as a module file")
    module = importlib.util.module_from_spec(spec)
    # registered before running it: @dataclass and pickling look classes up through sys.modules
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[module_name]
        where = f"{e.filename or path}:{e.lineno}" if e.lineno else (e.filename or path)
        detail = f"\n    {e.text.rstrip()}" if e.text else ""
        raise LearnerFileError(f"{where}: syntax error: {e.msg}{detail}") from None
    except Exception as e:
        del sys.modules[module_name]
        raise LearnerFileError(
            f"{_innermost_location(e, path)}: importing {os.path.basename(path)} failed with {type(e).__name__}: {e}"
        ) from None
    _loaded_paths.add(path)
    return module


def _innermost_location(exc: BaseException, path: str) -> str:
    """file:line of the deepest frame inside the learner's file (where the error happened, from their view)."""
    where = path
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == path:
            where = f"{path}:{frame.lineno}"
    return where


# ---------------------------------------------------------------------------------------------------------------
# TODOs left in a learner's file, and failures that happened inside one

@dataclasses.dataclass(frozen=True)
class Todo:
    qualname: str  # "Muon.step", "lr_multiplier"
    line: int  # of the skeleton's TODO raise
    message: str  # the TODO's text


def todos_in(path: str) -> list[Todo]:
    """Every TODO raise in the file (the skeleton's marker), in line order. A file
    that does not parse has none here (importing it reports the syntax error)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError, OSError):
        return []
    found = []
    _collect_todos(tree, "", found)
    return sorted(found, key=lambda t: t.line)


def _collect_todos(node, prefix: str, found: list) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualname = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                for raised in ast.walk(child):
                    message = _todo_message(raised)
                    if message is not None:
                        found.append(Todo(qualname, raised.lineno, message))
                        break
            _collect_todos(child, qualname + ".", found)


def _todo_message(node) -> str | None:
    """The text of a skeleton's TODO raise (the exception's "TODO ..." message), or None for any other node."""
    if not isinstance(node, ast.Raise) or node.exc is None:
        return None
    exc = node.exc
    if not (isinstance(exc, ast.Call) and isinstance(exc.func, ast.Name) and exc.func.id == "NotImplementedError"):
        return None
    args = exc.args
    if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) \
            and args[0].value.lstrip().upper().startswith("TODO"):
        return args[0].value.strip().splitlines()[0]
    return None


def learner_failure(exc: BaseException) -> str | None:
    """A one-line account of an exception raised inside a learner file loaded by this process ("FILE:LINE in
    QUALNAME: TYPE: message", a TODO named as such), or None when no learner file is on its traceback (then it
    is not the learner's doing and should surface as it is)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename) in _loaded_paths]
    if not frames:
        return None
    frame = frames[-1]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NotImplementedError):
        return f"{frame.filename}:{frame.lineno}: {frame.name} is still a TODO ({text or 'NotImplementedError'})"
    return f"{frame.filename}:{frame.lineno} in {frame.name}: {type(exc).__name__}: {text}"


def top_level_names(path: str) -> set | None:
    """The classes, functions and assigned names a Python file defines at its top level (without running it);
    None when it cannot be read or does not parse (importing it says why)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError, OSError):
        return None
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names

"""Watching the learner's code run without changing it.

Runs inside the forked check process. It answers three questions about the learner's file:
- where did something happen? (`SourceMap`: line -> qualname from the file's syntax tree, and which methods
  carry the `# workbench: experiment` marker; `locate` and `exception_info` turn an exception into file, line,
  qualname and a traceback trimmed to what matters);
- what flowed through the model? (`ShapeRecorder`: forward hooks on every submodule, and wrappers around the
  module's `norm` / `apply_rotary_emb`, recording input/output shapes, dtypes and non-finite values);
- how to run one method of the learner's on its own? (`swapped_globals`: lend the module reference versions of
  the functions and classes a method calls, for as long as the check runs).
"""

import ast
import contextlib
import inspect
import io
import os
import sys
import tokenize
import traceback

import torch

from workbench.check.result import EXPERIMENT_MARKER
from workbench.course.phases import ALL_METHODS
from workbench.course.workspace import read_learner_file

TORCH_DIR = os.path.dirname(torch.__file__) + os.sep  # torch's frames are dropped from a learner's traceback


class SourceMap:
    """Which function or method of the learner's file a line belongs to, by parsing the file (no execution)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.spans: list[tuple[int, int, str]] = []  # (first line, last line, qualname), outer before inner
        self.nodes: dict[int, ast.AST] = {}  # first line -> function node
        self.experiments: list[str] = []  # qualnames of the functions with the experiment marker, in file order
        try:  # only a regular file, size-capped: a FIFO or a device put in its place must not hang the worker
            source = read_learner_file(self.path, errors="replace")
            tree = ast.parse(source, filename=self.path)
            self._visit(tree.body, "")
            self.experiments = self._marked(source)
        except (OSError, SyntaxError, ValueError, MemoryError, RecursionError, tokenize.TokenError):
            # unreadable, or too deeply nested for the parser (`x = ---...1`): no map; importing the file
            # reports the learner's own error
            self.spans, self.nodes, self.experiments = [], {}, []

    def _visit(self, body, prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = prefix + node.name
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if not isinstance(node, ast.ClassDef):
                    self.spans.append((first, node.end_lineno or node.lineno, qualname))
                    self.nodes[first] = node
                    self._visit(node.body, qualname + ".<locals>.")
                else:
                    self._visit(node.body, qualname + ".")

    def _marked(self, source: str) -> list[str]:
        """The functions holding a `# workbench: experiment` comment (a real comment token, not text in a string)."""
        marked = []
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            words = " ".join(tok.string.lstrip("#").split()).lower()
            if tok.type == tokenize.COMMENT and words.startswith(EXPERIMENT_MARKER.lstrip("# ")):
                qualname = self.qualname_at(tok.start[0])
                if qualname and qualname not in marked:
                    marked.append(qualname)
        return marked

    def qualname_at(self, line: int | None) -> str | None:
        """The innermost function or method containing `line`, or None for module level."""
        best = None
        for first, last, qualname in self.spans:
            if line is not None and first <= line <= last:
                if best is None or first >= best[0]:
                    best = (first, qualname)
        return best[1] if best else None

    def stub(self, fn) -> tuple[str, int] | None:
        """(message, line) when `fn` is an untouched TODO stub of this file: a docstring at most, then (in an
        __init__) `super().__init__()`, then a single raise of the skeleton's TODO error. Checked on the function
        object actually defined, so a method replaced at runtime is not mistaken for its stub."""
        code = getattr(inspect.unwrap(fn), "__code__", None) if callable(fn) else None
        if code is None or not same_file(code.co_filename, self.path):
            return None
        node = self.nodes.get(code.co_firstlineno)
        if node is None:
            return None
        body = list(node.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body = body[1:]
        if len(body) == 2 and ast.unparse(body[0]) == "super().__init__()":
            body = body[1:]
        if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
            return None
        exc = body[0].exc
        if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
            return "", body[0].lineno
        if (isinstance(exc, ast.Call) and isinstance(exc.func, ast.Name) and exc.func.id == "NotImplementedError"
                and not exc.keywords and len(exc.args) <= 1):
            if not exc.args:
                return "", body[0].lineno
            if isinstance(exc.args[0], ast.Constant) and isinstance(exc.args[0].value, str):
                return exc.args[0].value, body[0].lineno
        return None

    def def_line(self, qualname: str) -> int | None:
        for first, _, name in self.spans:
            if name == qualname:
                return first
        return None


def same_file(a: str | None, b: str) -> bool:
    return a is not None and os.path.abspath(a) == b


def learner_frames(tb, path: str) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(tb) if same_file(f.filename, path)]


def locate(exc: BaseException, smap: SourceMap) -> tuple[int | None, str | None]:
    """(line, qualname) of the innermost frame of the learner's file in the exception's traceback."""
    if isinstance(exc, SyntaxError) and same_file(exc.filename, smap.path):
        return exc.lineno, None
    frames = learner_frames(exc.__traceback__, smap.path)
    if not frames:
        return None, None
    line = frames[-1].lineno
    return line, smap.qualname_at(line) or "<module>"


def raised_in_learner_file(exc: BaseException, path: str) -> bool:
    """True when the last frame of the traceback (where the raise happened) is in the learner's file."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and same_file(frames[-1].filename, path)


def is_todo(exc: BaseException, path: str) -> bool:
    """A NotImplementedError raised by the learner's own code: a method not written yet."""
    return isinstance(exc, NotImplementedError) and raised_in_learner_file(exc, path)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "Cannot allocate memory" in text
                                              or "out of memory" in text.lower())


def trimmed_traceback(exc: BaseException, path: str, limit: int = 12) -> str:
    """The traceback from the first frame in the learner's file on: the workbench's own frames are noise, and so
    are torch's between two of the learner's (nn.Module's call machinery); the frame that raised is always kept."""
    if isinstance(exc, SyntaxError) and exc.filename and same_file(exc.filename, path):
        return "".join(traceback.format_exception_only(type(exc), exc))  # its file:line is the whole story
    frames = traceback.extract_tb(exc.__traceback__)
    start = next((i for i, f in enumerate(frames) if same_file(f.filename, path)), 0)
    frames = frames[start:]
    frames = [f for i, f in enumerate(frames) if i == len(frames) - 1 or not f.filename.startswith(TORCH_DIR)]
    if len(frames) > limit:  # deep recursion: keep both ends
        frames = traceback.StackSummary.from_list(frames[:limit // 2] + frames[-limit // 2:])
    lines = ["Traceback (most recent call last):\n"] + traceback.StackSummary.from_list(frames).format()
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def exception_info(exc: BaseException, smap: SourceMap) -> dict:
    """JSON-able description: type, one-line message, file, line, qualname, traceback."""
    line, qualname = locate(exc, smap)
    message = str(exc).strip()
    if isinstance(exc, SyntaxError):
        message = exc.msg or "invalid syntax"
        if exc.text:
            message += f": {exc.text.strip()}"
    elif isinstance(exc, SystemExit):
        message = f"sys.exit({exc.code!r}) was called"
    elif isinstance(exc, KeyboardInterrupt):
        message = "KeyboardInterrupt was raised"
    if len(message) > 2000:
        message = message[:2000] + " …"
    return {
        "type": type(exc).__name__,
        "message": message.splitlines()[0] if message else type(exc).__name__,
        "full_message": message,
        "file": smap.path if line is not None else None,
        "line": line,
        "qualname": qualname,
        "traceback": trimmed_traceback(exc, smap.path),
        "out_of_memory": is_out_of_memory(exc),
    }


def experiments(smap: SourceMap, requested=()) -> list[str]:
    """The methods of the GPT contract checked as experiments: those marked in the file, then those asked for
    (`check --experiment QUALNAME`)."""
    names = list(smap.experiments) + [q for q in requested if q not in smap.experiments]
    return [q for q in names if q in ALL_METHODS]


@contextlib.contextmanager
def swapped_globals(module, **replacements):
    """Temporarily set names in the learner's module (e.g. norm=reference norm) and put them back after."""
    missing = object()
    saved = {name: module.__dict__.get(name, missing) for name in replacements}
    module.__dict__.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                module.__dict__.pop(name, None)
            else:
                module.__dict__[name] = value


def shape_of(obj):
    """Shapes of tensors inside obj, keeping its structure: a list of ints per tensor, None for None."""
    if isinstance(obj, torch.Tensor):
        return list(obj.shape)
    if isinstance(obj, (list, tuple)):
        return [shape_of(o) for o in obj]
    if obj is None:
        return None
    if isinstance(obj, (int, float, bool, str)):
        return obj if not isinstance(obj, str) else obj[:40]
    return type(obj).__name__


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)


def _nonfinite(obj) -> bool:
    for t in _tensors(obj):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.detach()).all()):
            return True
    return False


def _dtype(obj) -> str | None:
    for t in _tensors(obj):
        return str(t.dtype).replace("torch.", "")
    return None


class ShapeRecorder:
    """Record every submodule call and every call of the module-level functions named in `functions`.

    Entries are in call order (a parent before its children), each:
    {"name", "kind": "module"|"function", "type", "caller", "depth", "inputs", "output", "dtype", "nonfinite"}.
    `first_nonfinite` is where NaN/inf values are born: the first call, in order of completion, whose output
    holds them while its inputs did not (a module that only passes them on is not blamed).
    """

    MAX_ENTRIES = 400

    def __init__(self, model: torch.nn.Module, module=None, functions=("norm", "apply_rotary_emb")):
        self.model, self.module, self.functions = model, module, functions
        self.entries: list[dict] = []
        self.first_nonfinite: dict | None = None
        self._born = False  # first_nonfinite had finite inputs: the NaNs were made there
        self._stack: list[dict] = []
        self._handles = []
        self._saved = {}

    def _open(self, name, kind, type_name, inputs, caller=None) -> dict | None:
        entry = {"name": name, "kind": kind, "type": type_name, "caller": caller, "depth": len(self._stack),
                 "inputs": shape_of(inputs), "output": None, "dtype": None, "nonfinite": False, "finished": False,
                 "inputs_finite": not _nonfinite(inputs)}
        if len(self.entries) < self.MAX_ENTRIES:
            self.entries.append(entry)
        self._stack.append(entry)
        return entry

    def _close(self, entry, output) -> None:
        if self._stack and self._stack[-1] is entry:
            self._stack.pop()
        entry["output"] = shape_of(output)
        entry["dtype"] = _dtype(output)
        entry["nonfinite"] = _nonfinite(output)
        entry["finished"] = True
        if entry["nonfinite"] and (self.first_nonfinite is None or (entry["inputs_finite"] and not self._born)):
            if self.first_nonfinite is None or entry["inputs_finite"]:
                self.first_nonfinite = {"name": entry["name"], "kind": entry["kind"], "type": entry["type"]}
                if entry["kind"] == "function":
                    self.first_nonfinite["caller"] = entry["caller"]
                self._born = entry["inputs_finite"]

    def __enter__(self):
        for name, sub in self.model.named_modules():
            label = name or "model"

            def pre(mod, args, kwargs, label=label):
                self._open(label, "module", type(mod).__name__, list(args) + list(kwargs.values()))

            def post(mod, args, kwargs, output):
                if self._stack:
                    self._close(self._stack[-1], output)

            self._handles.append(sub.register_forward_pre_hook(pre, with_kwargs=True))
            self._handles.append(sub.register_forward_hook(post, with_kwargs=True, always_call=True))
        if self.module is not None:
            for fname in self.functions:
                fn = self.module.__dict__.get(fname)
                if callable(fn):
                    self._saved[fname] = fn
                    self.module.__dict__[fname] = self._wrap(fname, fn)
        return self

    def _wrap(self, fname, fn):
        recorder = self

        def recorded(*args, **kwargs):
            caller = sys._getframe(1).f_code
            caller_name = getattr(caller, "co_qualname", caller.co_name)
            entry = recorder._open(fname, "function", "function", list(args) + list(kwargs.values()), caller_name)
            out = None
            try:
                out = fn(*args, **kwargs)
                return out
            finally:
                recorder._close(entry, out)

        recorded.__wrapped__ = fn
        return recorded

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for fname, fn in self._saved.items():
            self.module.__dict__[fname] = fn
        self._saved.clear()
        return False

    def rows(self) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "inputs_finite"} for e in self.entries]

"""Methods as pieces of source text: find one in a file, take it from the skeleton or the reference, put it back.

Used by the hint ladder (the reference's code of one method), the side-by-side view after a method passes, and
"reset this method to its skeleton" (with undo), for the GPT file and for track files (their reference module and
the skeleton `init --track` makes from it). Files are parsed with `ast`, never imported, so nothing here
runs the learner's code or imports torch.
"""

import ast
import textwrap
from pathlib import Path

from workbench.course.workspace import SKELETON_TEMPLATE

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "nanochat" / "gpt.py"


class MethodNotFound(LookupError):
    pass


def _find(tree: ast.Module, qualname: str) -> ast.FunctionDef:
    parts = qualname.split(".")
    body = tree.body
    node = None
    for i, part in enumerate(parts):
        want = ast.ClassDef if i < len(parts) - 1 else (ast.FunctionDef, ast.AsyncFunctionDef)
        node = next((n for n in body if isinstance(n, want) and n.name == part), None)
        if node is None:
            raise MethodNotFound(qualname)
        body = node.body
    return node


def method_span(source: str, qualname: str) -> tuple[int, int]:
    """(first line, last line), 1-based and inclusive, of the method's definition (decorators included).

    Raises SyntaxError when the file does not parse, MethodNotFound when the method is not there.
    """
    node = _find(ast.parse(source), qualname)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return first, node.end_lineno


def method_source(source: str, qualname: str, dedent: bool = False) -> str:
    first, last = method_span(source, qualname)
    text = "".join(source.splitlines(keepends=True)[first - 1:last])
    return textwrap.dedent(text) if dedent else text


def replace_method(source: str, qualname: str, new_method: str) -> str:
    """`source` with the definition of `qualname` replaced by `new_method` (re-indented to fit)."""
    first, last = method_span(source, qualname)
    lines = source.splitlines(keepends=True)
    indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]
    body = textwrap.indent(textwrap.dedent(new_method), indent, lambda line: line.strip() != "")
    if not body.endswith("\n"):
        body += "\n"
    return "".join(lines[: first - 1]) + body + "".join(lines[last:])


def skeleton_method(qualname: str, skeleton: str | None = None) -> str:
    """The method as the skeleton has it: the GPT template's, or from `skeleton` (a track file's skeleton text)."""
    return method_source(skeleton if skeleton is not None else SKELETON_TEMPLATE.read_text(encoding="utf-8"), qualname)


def reference_method(qualname: str, reference: Path = REFERENCE_FILE) -> str:
    """The method as the reference module has it (nanochat/gpt.py unless another module's file is given)."""
    return method_source(reference.read_text(encoding="utf-8"), qualname)


def reference_outline(qualname: str, reference: Path = REFERENCE_FILE) -> str:
    """The reference method with its code hidden: signature, comments and control flow, `...` for the rest."""
    source = reference_method(qualname, reference)
    lines = textwrap.dedent(source).splitlines()
    out, hidden = [], False
    keywords = ("if ", "elif ", "else:", "for ", "while ", "with ", "return", "yield", "def ", "@", "class ")
    for line in lines:
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped.startswith("#") or stripped.startswith(keywords) or not stripped:
            if stripped.startswith(("return", "yield")):
                out.append(f"{indent}{stripped.split()[0]} ...")
            else:
                out.append(line)
            hidden = False
        elif stripped.startswith(('"""', "'''")):
            out.append(line)  # the first line of a docstring
        elif not hidden:
            out.append(f"{indent}...")
            hidden = True
    return "\n".join(out)

"""The calculator tool behind <|python_start|>...<|python_end|>: a safe evaluator for plain arithmetic.

A chat model can write `<|python_start|>12*(3+4)<|python_end|>`; the engine hands the text in between to
`safe_eval` and, if a result comes back, feeds `<|output_start|>84<|output_end|>` to the model. The text is
written by a model (or by whoever typed the prompt), so it is treated as hostile:

- it is parsed with `ast` (never `eval`/`exec`) and only these nodes are walked: number literals (int or
  float), `+ - * / // %`, unary `+`/`-`, and parentheses (which the parser already folds away);
- everything else yields no result: names, attributes, calls, subscripts, comparisons, strings, `**`,
  lambdas, comprehensions... (nanochat's own tool also allowed `"text".count("x")`; this one is arithmetic only);
- the input is at most `MAX_INPUT_CHARS` characters, and every literal and every intermediate value must stay
  within `MAX_MAGNITUDE`; with no exponentiation that caps the work at a few dozen small-number operations, so
  evaluation time is bounded without a timer;
- no exception escapes: any failure is `None`.

Results come back as text: integers exactly, floats rounded to 6 decimal places and 15 significant digits,
with trailing zeros dropped (`7/2` -> "3.5", `6/3` -> "2", `0.1+0.2` -> "0.3").
"""

import ast
import math
import operator
import re
from decimal import Decimal

MAX_INPUT_CHARS = 100
MAX_MAGNITUDE = 10**15

_BINARY_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY_OPS = {ast.UAdd: operator.pos, ast.USub: operator.neg}
# "1,234,567" is a number the way people write it; commas anywhere else are not arithmetic
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


class _Refused(Exception):
    pass


def safe_eval(expr: str) -> str | None:
    """Evaluate an arithmetic expression; return the result as text, or None if it is not plain arithmetic."""
    try:
        if not isinstance(expr, str) or len(expr) > MAX_INPUT_CHARS:
            return None
        text = _THOUSANDS.sub("", expr.strip())
        if not text:
            return None
        tree = ast.parse(text, mode="eval")
        return _format(_evaluate(tree.body))
    except (_Refused, SyntaxError, ValueError, ArithmeticError, MemoryError, RecursionError, TypeError):
        return None


def _evaluate(node):
    if isinstance(node, ast.Constant):
        value = node.value
        # bool is a subclass of int, and True/False are names a model should not be using here
        if type(value) not in (int, float):
            raise _Refused
        return _checked(value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _checked(_UNARY_OPS[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left = _evaluate(node.left)
        right = _evaluate(node.right)
        return _checked(_BINARY_OPS[type(node.op)](left, right))
    raise _Refused


def _checked(value):
    if isinstance(value, float) and not math.isfinite(value):
        raise _Refused
    if abs(value) > MAX_MAGNITUDE:
        raise _Refused
    return value


def _format(value) -> str:
    if isinstance(value, int):
        return str(value)
    value = round(value, 6)
    if value == int(value):
        return str(int(value))
    text = format(value, ".15g")
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text

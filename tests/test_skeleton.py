"""The learner skeleton and the reference GPT never drift apart, and every skeleton method is a guided TODO."""

import ast
import inspect
import traceback
from pathlib import Path

import pytest

from workbench.course.phases import ALL_METHODS, LESSON_FOR, PHASES
from workbench.course.workspace import SKELETON_TEMPLATE

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "nanochat" / "gpt.py"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """qualname -> def, for module-level functions and methods of module-level classes."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    out[f"{node.name}.{sub.name}"] = sub
    return out


def _signature(fn: ast.FunctionDef) -> str:
    decorators = "".join(f"@{ast.unparse(d)} " for d in fn.decorator_list)
    return f"{decorators}def {fn.name}({ast.unparse(fn.args)})"


ref_tree, skel_tree = _tree(REFERENCE), _tree(SKELETON_TEMPLATE)
ref_fns, skel_fns = _functions(ref_tree), _functions(skel_tree)


def test_same_top_level_definitions_in_the_same_order():
    def names(tree):
        return [(type(n).__name__, n.name) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert names(skel_tree) == names(ref_tree)


def test_same_imports_and_all_absolute():
    def imports(tree):
        return sorted(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    assert imports(skel_tree) == imports(ref_tree)
    for node in ast.walk(skel_tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in the skeleton: {ast.unparse(node)}"


def test_same_classes_bases_decorators_and_methods():
    ref_classes = {n.name: n for n in ref_tree.body if isinstance(n, ast.ClassDef)}
    for node in (n for n in skel_tree.body if isinstance(n, ast.ClassDef)):
        ref = ref_classes[node.name]
        assert [ast.unparse(b) for b in node.bases] == [ast.unparse(b) for b in ref.bases], node.name
        assert [ast.unparse(d) for d in node.decorator_list] == [ast.unparse(d) for d in ref.decorator_list]
        methods = [s.name for s in node.body if isinstance(s, ast.FunctionDef)]
        assert methods == [s.name for s in ref.body if isinstance(s, ast.FunctionDef)], node.name


@pytest.mark.parametrize("qualname", sorted(_functions(_tree(REFERENCE))))
def test_signature_matches_the_reference(qualname):
    assert qualname in skel_fns, f"{qualname} is missing from the skeleton"
    assert _signature(skel_fns[qualname]) == _signature(ref_fns[qualname])


def test_gptconfig_is_copied_field_for_field():
    def fields(tree):
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GPTConfig")
        return [(ast.unparse(s.target), ast.unparse(s.annotation), ast.unparse(s.value) if s.value else None)
                for s in cls.body if isinstance(s, ast.AnnAssign)]
    assert fields(skel_tree) == fields(ref_tree)
    assert len(fields(skel_tree)) == 6


def test_every_learner_method_is_in_the_skeleton_and_nothing_else():
    assert set(skel_fns) == set(ALL_METHODS)
    assert set(ref_fns) == set(ALL_METHODS), "phases.py and nanochat/gpt.py disagree about the methods"


@pytest.mark.parametrize("qualname", ALL_METHODS)
def test_each_body_is_a_guiding_docstring_and_a_todo(qualname):
    fn = skel_fns[qualname]
    doc = ast.get_docstring(fn)
    assert doc and len(doc.splitlines()) >= 1
    assert f"lessons/{LESSON_FOR[qualname]}" in doc, "the docstring must name the lesson file"
    assert f"§ `{qualname}`" in doc, "the docstring must name the lesson's section heading"
    body = fn.body[1:]
    if fn.name == "__init__":
        assert ast.unparse(body[0]) == "super().__init__()"
        body = body[1:]
    assert len(body) == 1 and isinstance(body[0], ast.Raise), f"{qualname}: body must be just the raise"
    exc = body[0].exc
    assert isinstance(exc, ast.Call) and ast.unparse(exc.func) == "NotImplementedError"
    message = exc.args[0].value
    assert message.startswith("TODO: ") and "\n" not in message and len(message) < 110, message


def test_docstrings_do_not_contain_the_reference_code():
    """Guidance, not the answer: no line of a reference body appears in the skeleton's docstrings."""
    ref_lines = set()
    for fn in ref_fns.values():
        for stmt in fn.body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # the reference's own docstrings
            ref_lines |= {line.strip() for line in ast.unparse(stmt).splitlines() if len(line.strip()) > 25}
    skeleton_text = SKELETON_TEMPLATE.read_text(encoding="utf-8")
    leaked = [line for line in ref_lines if line in skeleton_text]
    assert not leaked, leaked


def test_no_prints_in_the_skeleton():
    calls = [n for n in ast.walk(skel_tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "print"]
    assert not calls


def test_lines_fit_120_columns():
    long = [i for i, line in enumerate(SKELETON_TEMPLATE.read_text().splitlines(), 1) if len(line) > 120]
    assert not long, f"lines longer than 120 characters: {long}"


def _call_unbound(module, qualname):
    """Call a skeleton function/method with placeholder arguments; return the exception it raised."""
    owner, _, name = qualname.rpartition(".")
    if owner:
        cls = getattr(module, owner)
        fn = getattr(cls, name)
        target = cls.__new__(cls)
        n_args = len(inspect.signature(fn).parameters) - 1
        call = lambda: fn(target, *([None] * n_args))  # noqa: E731
    else:
        fn = getattr(module, name)
        call = lambda: fn(*([None] * len(inspect.signature(fn).parameters)))  # noqa: E731
    with pytest.raises(NotImplementedError) as info:
        call()
    return info.value


def test_importing_the_skeleton_and_calling_each_method_raises_its_own_todo(tmp_path):
    from nanochat.model_source import load_model_module
    learner = tmp_path / "learner_gpt.py"
    learner.write_bytes(SKELETON_TEMPLATE.read_bytes())
    module = load_model_module(str(learner))
    for qualname in ALL_METHODS:
        exc = _call_unbound(module, qualname)
        assert str(exc).startswith("TODO: ")
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        assert Path(frame.filename) == learner
        innermost = list(traceback.walk_tb(exc.__traceback__))[-1][0].f_code
        assert innermost.co_qualname == qualname


def test_first_todo_in_execution_order_is_gpt_init_in_phase_1(tmp_path):
    from nanochat.model_source import load_model_module
    learner = tmp_path / "learner_gpt.py"
    learner.write_bytes(SKELETON_TEMPLATE.read_bytes())
    module = load_model_module(str(learner))
    config = module.GPTConfig(sequence_len=64, vocab_size=256, n_layer=2, n_head=2, n_kv_head=2, n_embd=128)
    with pytest.raises(NotImplementedError) as info:
        module.GPT(config)
    innermost = list(traceback.walk_tb(info.value.__traceback__))[-1][0].f_code
    assert innermost.co_qualname == "GPT.__init__"
    assert "GPT.__init__" in PHASES[0].methods


def test_not_implemented_error_is_raised_nowhere_else_in_the_project():
    offenders = []
    for package in ("nanochat", "workbench", "rustbpe"):
        for path in (ROOT / package).rglob("*.py"):
            if "template" in str(path.relative_to(ROOT)):
                continue
            for node in ast.walk(_tree(path)):
                exc = node.exc.func if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) else \
                    node.exc if isinstance(node, ast.Raise) else None
                if exc is not None and ast.unparse(exc) in ("NotImplementedError", "builtins.NotImplementedError"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders

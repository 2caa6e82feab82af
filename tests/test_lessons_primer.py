"""The math primer (lesson 22), the glossary (lesson 23) and the "why" sections of the other lessons.

The primer's worked numbers are recomputed with torch from the text the lesson shows, its shapes from the
workbench's depth-4 model; every glossary entry sits under its letter, in order, and points at lessons that
exist; each "why" question has its section in the lesson it belongs to; and the TUI's lesson search finds a
glossary entry from another lesson (Pilot). The form (front matter, Questions, 80 columns, names and flags that
must exist) is checked with every other lesson by tests/test_lessons.py.
"""

import asyncio
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nanochat import gpt as ref_gpt

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
PRIMER, GLOSSARY = "22-math-primer.md", "23-glossary.md"
WHY_SECTIONS = {  # the guide's "why" questions, each answered in the lesson it belongs to
    "02-tokenization.md": "Why BPE, and not characters or words",
    "03-embeddings-and-config.md": "Why no biases",
    "05-rmsnorm.md": "Why not BatchNorm",
    "07-attention.md": "Decoder-only, and what an encoder does differently",
    "12-training-loop.md": "Does a longer context help learning?",
}


def text(name):
    return (LESSONS / name).read_text(encoding="utf-8")


def vector(line_text):
    """The numbers of the first [...] in a line."""
    inside = re.search(r"\[([^\]]*)\]", line_text).group(1)
    return [float(x) for x in inside.replace("−", "-").split(",")]


def line(name, start):
    """The first line of lesson `name` that starts with `start` (after indentation)."""
    found = [ln.strip() for ln in text(name).splitlines() if ln.strip().startswith(start)]
    assert found, f"{name}: no line starts with {start!r}"
    return found[0]


def close(shown, value):
    """`shown` (as written, with its decimals) is `value` rounded."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10 ** -decimals + 1e-9


# ---------------------------------------------------------------------------------------------------------------
# lesson 22's numbers

def test_dot_product_length_and_rms():
    a, b = torch.tensor(vector(line(PRIMER, "a     ="))), torch.tensor(vector(line(PRIMER, "b     =")))
    assert line(PRIMER, "a · b =").endswith(f"= {int(a @ b)}")
    body = re.sub(r"\s+", " ", text(PRIMER))
    length = re.search(r"√14 ≈ (\d+\.\d+)", body).group(1)
    assert float(a @ a) == 14 and close(length, float(a.norm()))
    rms = re.search(r"√\(14 / 3\) ≈ (\d+\.\d+)", body).group(1)
    assert close(rms, float(a.pow(2).mean().sqrt()))
    scaled = re.search(r"12 / √3 ≈ (\d+\.\d+)", body).group(1)  # the first question's answer
    assert close(scaled, float(a @ b) / math.sqrt(3))


def test_matrix_multiply_example():
    block = re.search(r"```\nA \(2, 3\).*?\n(.*?)```", text(PRIMER), re.S).group(1)
    rows = [[vector(g) for g in re.findall(r"\[[^\]+]*\]", ln)] for ln in block.splitlines()]  # sums skipped
    a = torch.tensor([rows[0][0], rows[1][0]])
    b = torch.tensor([rows[0][1], rows[1][1], rows[2][0]])
    assert torch.equal(a @ b, torch.tensor([rows[0][2], rows[1][2]])), a @ b


def test_linear_layer_shapes_and_cost():
    layer = torch.nn.Linear(256, 1024, bias=False)
    assert tuple(layer.weight.shape) == (1024, 256)
    assert "weight (1024, 256)" in text(PRIMER)
    assert tuple(layer(torch.zeros(1, 512, 256)).shape) == (1, 512, 1024)
    assert f"{512 * 1024 * 256:,}" in text(PRIMER)


def test_shapes_through_attention_of_the_workbench_model():
    """The shape walk of lesson 22 is what the reference attention does in the depth-4 check model."""
    from workbench.check.reference import DEPTH4

    config = ref_gpt.GPTConfig(sequence_len=512, vocab_size=4096, **DEPTH4)
    with torch.device("meta"):
        model = ref_gpt.GPT(config)
    attn = model.transformer.h[0].attn
    B, T, H, D = 1, 512, attn.n_head, attn.head_dim
    assert (config.n_embd, H, D) == (256, 2, 128)
    x = torch.empty(B, T, config.n_embd, device="meta")
    q = attn.c_q(x).view(B, T, H, D)
    scores = q.transpose(1, 2) @ q.transpose(1, 2).transpose(-2, -1)
    walk = re.search(r"```\n(x  .*?q = c_q.*?)```", text(PRIMER), re.S).group(1).splitlines()
    assert walk[0].startswith("x ") and walk[0].endswith(f"({B}, {T}, {config.n_embd})")
    assert walk[1].startswith("q = c_q") and f"({B}, {T}, {H}, {D})" in walk[1] and tuple(q.shape) == (B, T, H, D)
    assert f"({B}, {H}, {T}, {D})" in walk[2]
    assert walk[3].startswith("q @ k") and f"({B}, {H}, {T}, {T})" in walk[3] and tuple(scores.shape) == (B, H, T, T)
    assert walk[-1].endswith(f"({B}, {T}, {config.n_embd})")
    cos, _ = model._precompute_rotary_embeddings(T, D, device=torch.device("meta"))
    assert tuple(cos.shape) == (1, T, 1, D // 2)  # "(1, T, 1, D/2)", as the broadcasting section says
    assert "(1, T, 1, D/2)" in re.sub(r"\s+", " ", text(PRIMER))


def test_broadcasting_example():
    x = torch.tensor([[1, 2, 3], [4, 5, 6]])
    row = torch.tensor(vector(line(PRIMER, "x (2, 3)").split("row (3,)")[1]), dtype=torch.long)
    lines = text(PRIMER).splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("x + row  (2, 3)"))
    shown = [vector(lines[first].split("[[")[1].join("[]")), vector(lines[first + 1])]
    assert (x + row).tolist() == shown


def test_softmax_temperature_and_cross_entropy():
    z = torch.tensor([2.0, 1.0, 0.0])
    assert vector(line(PRIMER, "exp(z)      =")) == pytest.approx(z.exp().tolist(), abs=5e-4)
    assert close(re.search(r"sum = (\d+\.\d+)", line(PRIMER, "exp(z)      =")).group(1), float(z.exp().sum()))
    p = z.softmax(0)
    assert vector(line(PRIMER, "softmax(z)  =")) == pytest.approx(p.tolist(), abs=5e-4)
    body = re.sub(r"\s+", " ", text(PRIMER))
    sharp = re.search(r"probabilities become (\[[^\]]+\])", body).group(1)
    assert vector(sharp) == pytest.approx((z / 0.5).softmax(0).tolist(), abs=5e-4)
    first, last = re.search(r"-ln\(0\.665\) ≈ (\d\.\d+); if it is the last one, -ln\(0\.0900\) ≈ (\d\.\d+)", body).groups()
    losses = [float(F.cross_entropy(z[None], torch.tensor([t]))) for t in (0, 2)]
    assert close(first, losses[0]) and close(last, losses[1])
    z_grad = z.clone().requires_grad_()
    F.cross_entropy(z_grad[None], torch.tensor([0])).backward()
    gradient = re.search(r"= (\[-0\.335, [^\]]+\])", body).group(1)
    assert vector(gradient) == pytest.approx(z_grad.grad.tolist(), abs=5e-4)


def test_exp_log_and_float32_limits():
    body = re.sub(r"\s+", " ", text(PRIMER))
    assert close(re.search(r"ln\(4096\) ≈ (\d+\.\d+)", body).group(1), math.log(4096))
    assert close(re.search(r"ln\(2\) ≈ (\d+\.\d+)", body).group(1), math.log(2))
    assert f"{torch.finfo(torch.float32).max:.1e}".startswith("3.4e+38") and "3.4 · 10³⁸" in body
    limit = float(re.search(r"inputs above about (\d+\.\d)", body).group(1))
    assert math.isfinite(torch.tensor(limit - 0.1).exp().item())
    assert math.isinf(torch.tensor(limit + 0.1).exp().item())


def test_chain_rule_example_and_its_numerical_check():
    x = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y = (3 * x + 1) ** 2
    y.backward()
    assert line(PRIMER, "dy/dx = 8 · 3 =").endswith(f"= {int(x.grad)}")
    f = lambda v: (3 * v + 1) ** 2  # noqa: E731
    body = re.sub(r"\s+", " ", text(PRIMER))
    hi, lo = re.search(r"\(16\.\d+ - 15\.\d+\)", body).group(0).strip("()").split(" - ")
    assert (float(hi), float(lo)) == pytest.approx((f(1.001), f(0.999)), abs=1e-9)
    assert (f(1.001) - f(0.999)) / 0.002 == pytest.approx(float(x.grad))


def test_relu_squared_derivative_and_sqrt_n():
    body = re.sub(r"\s+", " ", text(PRIMER))
    x = torch.tensor([3.0, -1.0], requires_grad=True)
    (F.relu(x) ** 2).sum().backward()
    assert x.grad.tolist() == [6.0, 0.0] and "2 · relu(x): 6 at x = 3" in body
    assert close(re.search(r"√128 ≈ (\d+\.\d+)", body).group(1), math.sqrt(128))
    g = torch.Generator().manual_seed(0)  # the std of a dot product of two random length-128 vectors is √128
    a, b = torch.randn(20000, 128, generator=g), torch.randn(20000, 128, generator=g)
    assert float((a * b).sum(1).std()) == pytest.approx(math.sqrt(128), rel=0.03)
    assert "w becomes 0.3" in body and 0.5 - 0.1 * 2 == pytest.approx(0.3)


# ---------------------------------------------------------------------------------------------------------------
# lesson 23 and the "why" sections

def glossary_entries():
    """[(letter heading, term, definition)] in the order of the file."""
    entries, letter = [], None
    sections = text(GLOSSARY).split("\n## Questions\n")[0]
    for block in re.split(r"\n\s*\n", sections):
        block = block.strip()
        if re.fullmatch(r"## [A-Z]", block):
            letter = block[3]
        elif block.startswith("**") and letter:
            term, definition = re.match(r"\*\*(.+?)\.\*\* (.*)", block, re.S).groups()
            entries.append((letter, term, " ".join(definition.split())))
    return entries


def test_glossary_entries_are_alphabetical_and_point_at_real_lessons():
    entries = glossary_entries()
    assert len(entries) >= 60
    letters = [letter for letter, _, _ in entries]
    assert letters == sorted(letters)
    numbers = {int(p.name[:2]) for p in LESSONS.glob("[0-9][0-9]-*.md")}
    for letter, term, definition in entries:
        assert term[0].upper() == letter, f"{term!r} is under {letter}"
        for group in re.findall(r"lessons? ((?:\d\d(?:,| and| or)? ?)+)", definition):
            for n in re.findall(r"\d\d", group):
                assert int(n) in numbers, f"the glossary's {term!r} points at lesson {n}, which does not exist"
    for letter in sorted(set(letters)):
        terms = [t.lower() for lt, t, _ in entries if lt == letter]
        assert terms == sorted(terms), f"the glossary's {letter} entries are not in order: {terms}"


def test_glossary_defines_the_terms_the_lessons_lean_on():
    terms = {term.lower() for _, term, _ in glossary_entries()}
    for needed in ("attention", "cross-entropy", "softmax", "logit", "kv cache", "residual stream", "rmsnorm",
                   "muon", "adamw", "bpe (byte pair encoding)", "gradient", "broadcasting", "decoder-only"):
        assert needed in terms, f"the glossary has no entry for {needed!r}"


@pytest.mark.parametrize("lesson,heading", sorted(WHY_SECTIONS.items()))
def test_each_why_question_is_answered_in_its_lesson(lesson, heading):
    sections = re.split(r"^## ", text(lesson), flags=re.M)
    found = [s for s in sections if s.startswith(heading + "\n")]
    assert found, f"{lesson} has no section '## {heading}'"
    assert len(found[0].split()) >= 120, f"{lesson}: '## {heading}' is too short to answer the question"


# ---------------------------------------------------------------------------------------------------------------
# found from the TUI

@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_the_lessons_search_finds_a_glossary_entry_from_another_lesson(tmp_path, monkeypatch):
    from workbench.course.workspace import init_workspace
    from workbench.tui.app import WorkbenchApp

    monkeypatch.delenv("NANOCHAT_LESSONS_DIR", raising=False)  # the real lessons folder
    workspace = init_workspace(tmp_path / "ws")
    phrase = "Memorising the training data"  # only in the glossary's "Overfitting" entry
    assert [p.name for p in LESSONS.glob("*.md") if phrase in p.read_text(encoding="utf-8")] == [GLOSSARY]
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.lesson_request = ("01-pipeline.md", None)
        await pilot.press("2")
        screen = app.screen
        await until(pilot, lambda: screen.current is not None and screen.current.name == "01-pipeline.md")
        await pilot.press("slash")
        await pilot.press(*phrase, "enter")
        await until(pilot, lambda: screen.current.name == GLOSSARY and screen._hits)
        assert phrase in screen._hits[0]._content.plain and "Overfitting" in screen._hits[0]._content.plain


async def until(pilot, condition, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)

"""The lessons are checked against the code they teach.

Every lesson in lessons/ must parse (YAML front matter with title, teaches, minutes, questions), end with its
Questions and Check-yourself sections, fit in 80 columns, and teach each learner method in the section that
the workbench jumps to. Every file, `path.py: Name`, class member, command and flag a lesson names must exist.
Numbers the code can compute (parameter counts, FLOPs per token, init stds, learning rates, the rotary and
attention examples, softcap values, the speedrun budget, the BPE example, compression...) are recomputed here
from the code and compared with what the lesson says, so a lesson cannot drift away from the code silently.

Models are built on the meta device (shapes, no memory) wherever only counts are needed.
"""

import ast
import functools
import math
import re
import shlex
import types
import unicodedata
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from nanochat import gpt as ref_gpt
from workbench.course.phases import ALL_METHODS, LESSON_FOR, PHASES

ROOT = Path(__file__).resolve().parent.parent
LESSONS_DIR = ROOT / "lessons"
LESSON_FILES = (
    "01-pipeline.md", "02-tokenization.md", "03-embeddings-and-config.md", "04-the-block.md", "05-rmsnorm.md",
    "06-rotary-embeddings.md", "07-attention.md", "08-mlp.md", "09-logits-and-loss.md", "10-initialisation.md",
    "11-optimisers.md", "12-training-loop.md", "13-generation.md", "14-mid-sft-rl.md", "15-evaluation.md",
    "16-distributed-and-speedrun.md", "17-debugging.md", "18-adamw-and-muon.md", "19-data-pipeline.md",
    "20-training-step.md", "21-kv-cache-and-sampling.md", "22-math-primer.md", "23-glossary.md",
)
INDEX = "README.md"
ALL_MARKDOWN = LESSON_FILES + (INDEX,)
MAX_COLUMNS = 80
SPEEDRUN_BATCH = 524288  # tokens per optimizer step in nanochat's speedrun (and base_train's default)


# ---------------------------------------------------------------------------------------------------------------
# reading lessons

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)


@functools.lru_cache(maxsize=None)
def read(name):
    """(front matter dict, body, whole text) of lessons/<name>."""
    text = (LESSONS_DIR / name).read_text(encoding="utf-8")
    m = FRONT_MATTER.match(text)
    assert m, f"{name}: no YAML front matter (--- ... --- at the top)"
    meta = yaml.safe_load(m.group(1))
    assert isinstance(meta, dict), f"{name}: the front matter is not a mapping"
    return meta, text[m.end():], text


def body(name):
    return read(name)[1]


def flat(text):
    """Whitespace collapsed to single spaces, unicode minus made ASCII: for matching prose across line breaks."""
    return re.sub(r"\s+", " ", text.replace("−", "-")).strip()


def fences(text, lang=None):
    """Contents of fenced code blocks (optionally only those whose info string is `lang`)."""
    return [m.group(2) for m in FENCE.finditer(text) if lang is None or m.group(1).strip() == lang]


def prose(text):
    """The text with fenced code blocks removed."""
    return FENCE.sub("", text)


def code_spans(text):
    return re.findall(r"`([^`\n]+)`", prose(text))


def sections(text):
    """[(level, heading, content)] for the Markdown headings outside code blocks."""
    out = []
    stripped = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # same offsets, no headings
    heads = list(re.finditer(r"^(#{1,6}) (.+)$", stripped, re.M))
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out.append((len(h.group(1)), h.group(2).strip(), text[h.end():end]))
    return out


def number(text):
    return float(text.replace(",", "").replace("−", "-"))


def table_rows(text, header_words):
    """Rows (lists of cell strings) of the Markdown table whose header contains every word in `header_words`."""
    for block in re.split(r"\n\s*\n", prose(text)):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if len(lines) >= 3 and lines[0].startswith("|") and all(w in lines[0] for w in header_words):
            return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:] if ln.startswith("|")]
    raise AssertionError(f"no table with header words {header_words}")


def shown(quoted, value, significant=False):
    """Does `quoted` show `value` correctly rounded, to the decimals it is written with (or, with `significant`,
    to its significant digits)? A hair of slack (1e-6 relative) absorbs float32 noise on rounding boundaries."""
    digits = quoted.replace(",", "").replace("−", "-").lstrip("-")
    if significant and number(quoted) != 0:
        mantissa = digits.replace(".", "").lstrip("0")
        step = 10.0 ** (math.floor(math.log10(abs(number(quoted)))) - len(mantissa) + 1)
    else:
        step = 10.0 ** -(len(digits.split(".")[1]) if "." in digits else 0)
    return abs(number(quoted) - value) <= 0.5 * step + 1e-6 * abs(value) + 1e-12


def display_width(line):
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


# ---------------------------------------------------------------------------------------------------------------
# the code the lessons point at

def gpt_attr(qualname, module=ref_gpt):
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def taught_attr(lesson, qualname):
    """What a lesson teaches: an exercise of a track whose lesson it is (in that track's reference module), else a
    name of nanochat/gpt.py."""
    from workbench.tracks.base import available_track_specs
    for spec in available_track_specs():
        for tf in spec.files:
            if any(e.qualname == qualname and e.lesson == lesson for e in tf.exercises):
                return gpt_attr(qualname, __import__(tf.reference_module, fromlist=["_"]))
    return gpt_attr(qualname)


@functools.lru_cache(maxsize=None)
def module_members(path):
    """{top-level name: set of member names (for classes: methods, nested classes, class attributes)}."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    members.add(item.name)
                elif isinstance(item, ast.Assign):
                    members.update(t.id for t in item.targets if isinstance(t, ast.Name))
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            names[node.name] = members
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names[n.id] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = set()
    return names


def resolves_in_file(path, dotted):
    names = module_members(path)
    head, *rest = dotted.split(".")
    if head not in names:
        return False
    if not rest:
        return True
    return len(rest) == 1 and rest[0] in names[head]


@functools.lru_cache(maxsize=None)
def project_classes():
    """{class name: members} over every Python file of the packages (classes defined in several files merge)."""
    classes = {}
    for package in ("nanochat", "workbench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, members in module_members(str(path)).items():
                if name[:1].isupper() and members:
                    classes.setdefault(name, set()).update(members)
    return classes


@functools.lru_cache(maxsize=None)
def string_constants(path):
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@functools.lru_cache(maxsize=None)
def workbench_strings():
    strings = set()
    for path in (ROOT / "workbench").rglob("*.py"):
        strings |= string_constants(str(path))
    return strings


def workbench_flags():
    return {s for s in workbench_strings() if s.startswith("-")} | {"-h", "--help"}


def module_flags(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"module {module} has no file {path.relative_to(ROOT)}"
    return {s for s in string_constants(str(path)) if s.startswith("-")} | {"-h", "--help"}


@functools.lru_cache(maxsize=None)
def torchrun_flags():
    from torch.distributed.run import get_args_parser

    return set(get_args_parser()._option_string_actions)


@functools.lru_cache(maxsize=None)
def base_train():
    from nanochat.scripts import base_train as module

    return module


def training():
    from nanochat import training as module

    return module


def meta_model(depth, vocab_size, seq_len=2048):
    """The GPT that `base_train --depth=<depth>` builds, on the meta device."""
    config = ref_gpt.GPTConfig(**base_train().model_config_kwargs(depth, seq_len, vocab_size))
    with torch.device("meta"):
        return ref_gpt.GPT(config)


def nparams(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# form

def test_the_lesson_files_are_exactly_the_contracted_ones():
    present = sorted(p.name for p in LESSONS_DIR.glob("*.md"))
    assert present == sorted(ALL_MARKDOWN), f"lessons/ holds {present}"


@pytest.mark.parametrize("name", LESSON_FILES)
def test_front_matter(name):
    meta, text, _ = read(name)
    for key, kind in (("title", str), ("teaches", list), ("minutes", int), ("questions", list)):
        assert isinstance(meta.get(key), kind), f"{name}: front matter needs {key!r} of type {kind.__name__}"
    assert meta["title"].strip(), f"{name}: empty title"
    assert 5 <= meta["minutes"] <= 15, f"{name}: a lesson is 5 to 15 minutes, not {meta['minutes']}"
    assert meta["questions"], f"{name}: no questions"
    for qa in meta["questions"]:
        assert isinstance(qa, dict) and set(qa) == {"q", "a"}, f"{name}: each question is {{q, a}}, got {qa!r}"
        assert all(isinstance(qa[k], str) and qa[k].strip() for k in "qa"), f"{name}: empty question or answer"
    assert all(isinstance(t, str) for t in meta["teaches"])
    assert text.lstrip().startswith("# "), f"{name}: the body should open with a '# ' title"


@pytest.mark.parametrize("name", LESSON_FILES)
def test_reading_time_matches_the_length(name):
    meta, text, _ = read(name)
    words = len(text.split())
    rate = words / meta["minutes"]
    assert 110 <= rate <= 230, f"{name}: {words} words for {meta['minutes']} minutes ({rate:.0f} words/minute)"


@pytest.mark.parametrize("name", LESSON_FILES)
def test_ends_with_questions_and_check_yourself(name):
    meta, text, _ = read(name)
    top = [(heading, content) for level, heading, content in sections(text) if level == 2]
    assert [h for h, _ in top[-2:]] == ["Questions", "Check yourself"], \
        f"{name}: the last two sections must be 'Questions' and 'Check yourself', got {[h for h, _ in top[-2:]]}"
    questions, checklist = top[-2][1], top[-1][1]
    answers = re.findall(r"<details><summary>Answer</summary>(.*?)</details>", questions, re.S)
    assert len(answers) == len(meta["questions"]), f"{name}: {len(answers)} answers for {len(meta['questions'])} questions"
    for qa, answer in zip(meta["questions"], answers):
        assert flat(qa["q"]) in flat(questions), f"{name}: question not in the Questions section: {qa['q'][:60]}"
        assert flat(qa["a"]) == flat(answer), f"{name}: the answer to {qa['q'][:50]!r} differs from the front matter"
    assert len(re.findall(r"^- \[ \] \S", checklist, re.M)) >= 3, f"{name}: 'Check yourself' needs >= 3 '- [ ]' items"


@pytest.mark.parametrize("name", ALL_MARKDOWN)
def test_lines_fit_in_80_columns(name):
    too_wide = [(i, line) for i, line in enumerate(read(name)[2].splitlines(), 1)
                if display_width(line) > MAX_COLUMNS and "http://" not in line and "https://" not in line]
    assert not too_wide, f"{name}: lines wider than {MAX_COLUMNS} columns: {too_wide[:3]}"
    assert "\t" not in read(name)[2], f"{name}: tabs render differently in every terminal; use spaces"


@pytest.mark.parametrize("name", ALL_MARKDOWN)
def test_code_spans_stay_on_one_line(name):
    for i, line in enumerate(prose(read(name)[2]).splitlines(), 1):
        assert line.count("`") % 2 == 0, f"{name}: a code span is cut by a line break: {line!r}"


def test_no_latex():
    for name in ALL_MARKDOWN:
        text = read(name)[2]
        assert not re.search(r"\$\$|\\frac|\\sqrt|\\sum|\\cdot|\\mathbf", text), f"{name}: LaTeX does not read in a terminal"


# ---------------------------------------------------------------------------------------------------------------
# the methods they teach

@pytest.mark.parametrize("name", LESSON_FILES)
def test_taught_qualnames_exist_and_have_a_heading(name):
    meta, text, _ = read(name)
    headings = [heading for _, heading, _ in sections(text)]
    for qualname in meta["teaches"]:
        try:
            taught_attr(name, qualname)
        except AttributeError:
            pytest.fail(f"{name} teaches {qualname}, which neither nanochat/gpt.py nor a track's module defines")
        assert any(f"`{qualname}`" in h for h in headings), f"{name}: no heading names `{qualname}`"


def test_every_learner_method_is_taught_by_its_lesson():
    assert set(LESSON_FOR) == set(ALL_METHODS)
    for method in ALL_METHODS:
        lesson = LESSON_FOR[method]
        assert lesson in LESSON_FILES, f"LESSON_FOR[{method!r}] = {lesson!r} is not a lesson file"
        assert method in read(lesson)[0]["teaches"], f"{lesson} must list {method} in `teaches`"
    for name in LESSON_FILES:
        for method in read(name)[0]["teaches"]:
            if method in LESSON_FOR:
                assert LESSON_FOR[method] == name, f"{name} teaches {method}, which belongs to {LESSON_FOR[method]}"


def test_every_track_exercise_is_taught_by_its_lesson():
    from workbench.tracks.base import available_track_specs
    for spec in available_track_specs():
        for exercise in (e for tf in spec.files for e in tf.exercises if e.lesson):
            if not (LESSONS_DIR / exercise.lesson).exists():
                continue  # a track whose lesson is still being written (checked as soon as the file is there)
            assert exercise.lesson in LESSON_FILES, f"{exercise.qualname}: lesson {exercise.lesson} is not a lesson file"
            assert exercise.qualname in read(exercise.lesson)[0]["teaches"], \
                f"{exercise.lesson} must list {exercise.qualname} in `teaches`"


def test_the_index_lists_every_lesson_and_method():
    meta, text, _ = read(INDEX)
    links = dict(re.findall(r"^\[(\d\d)\]: (\S+)$", text, re.M))
    for name in LESSON_FILES:
        key = name[:2]
        assert links.get(key) == name, f"README.md: no link [{key}]: {name}"
        lesson = read(name)[0]
        entry = re.search(rf"^\d+\. \[([^\]]+)\]\[{key}\]\n\s+(\d+) min\.(.*?)(?=\n\n)", text, re.M | re.S)
        assert entry, f"README.md: no entry for {name}"
        assert entry.group(1) == lesson["title"], f"README.md: title of {name} differs from its front matter"
        assert int(entry.group(2)) == lesson["minutes"], f"README.md: minutes of {name} differ"
        listed = re.findall(r"`([\w.]+)`", entry.group(3))
        assert listed == lesson["teaches"], f"README.md: methods listed for {name} differ from its `teaches`"
    rows = table_rows(text, ["phase", "method", "lesson"])
    expected = [[str(p.number), f"`{m}`", LESSON_FOR[m]] for p in PHASES for m in p.methods]
    assert rows == expected, "README.md: the method table differs from workbench/course/phases.py"


# ---------------------------------------------------------------------------------------------------------------
# references to files, names, commands and flags

PATH_REF = re.compile(r"(?<![\w./-])((?:nanochat|workbench|rustbpe|tests|lessons)/[\w./-]*\w\.(?:py|md|rs|toml|sh|tcss))")
SPAN_REF = re.compile(r"^((?:nanochat|workbench|rustbpe|tests)/[\w./-]+\.py): ([A-Za-z_][\w.]*)$")
TOP_LEVEL_FILES = ("speedrun.sh", "pyproject.toml")


@pytest.mark.parametrize("name", ALL_MARKDOWN)
def test_files_and_names_exist(name):
    text = read(name)[2]
    for path in set(PATH_REF.findall(text)):
        assert (ROOT / path).exists(), f"{name} refers to {path}, which does not exist"
    for span in code_spans(text):
        span = span.strip()
        m = SPAN_REF.match(span)
        if m:
            assert resolves_in_file(str(ROOT / m.group(1)), m.group(2)), f"{name}: `{span}` does not resolve"
        elif span in TOP_LEVEL_FILES:
            assert (ROOT / span).is_file(), f"{name} refers to {span}, which does not exist"
        elif re.fullmatch(r"(?:rustbpe|nanochat|workbench)(?:\.\w+)+(?:\(\))?", span):
            dotted = span.removesuffix("()").split(".")
            for i in range(len(dotted), 0, -1):
                try:
                    obj = __import__(".".join(dotted[:i]), fromlist=["_"])
                except ImportError:
                    continue
                for part in dotted[i:]:
                    assert hasattr(obj, part), f"{name}: `{span}` does not resolve ({part!r} missing)"
                    obj = getattr(obj, part)
                break
            else:
                pytest.fail(f"{name}: `{span}` names no importable module")
        else:
            m = re.fullmatch(r"([A-Z]\w*)\.(\w+)(?:\(\))?", span)
            if m and m.group(1) in project_classes():
                assert m.group(2) in project_classes()[m.group(1)], f"{name}: `{span}`: {m.group(1)} has no {m.group(2)}"


def commands(text):
    """Shell commands the text shows: lines of non-Python code blocks (with \\ continuations joined) and code
    spans that start with python -m, torchrun or nanochat-workbench."""
    found = []
    for m in FENCE.finditer(text):
        if m.group(1).strip() == "python":
            continue
        joined = re.sub(r"\\\n\s*", " ", m.group(2))
        found += [ln.strip() for ln in joined.splitlines()]
    found += code_spans(text)
    return [c for c in found if re.match(r"(python3? -m |torchrun |nanochat-workbench )", c)]


def command_flags(command):
    """[(set of valid flags, flag used, command)] for one command line."""
    tokens = shlex.split(command)
    out = []
    if tokens[0] == "nanochat-workbench":
        assert len(tokens) > 1 and tokens[1] in workbench_strings(), f"`{command}`: no such subcommand"
        out += [(workbench_flags(), t, command) for t in tokens[2:] if t.startswith("-")]
        return out
    if "-m" not in tokens:
        assert tokens[0] == "torchrun", f"`{command}`: which module?"
        return [(torchrun_flags(), t, command) for t in tokens[1:] if t.startswith("-")]
    m_index = tokens.index("-m")
    module = tokens[m_index + 1]
    if tokens[0] == "torchrun":
        out += [(torchrun_flags(), t, command) for t in tokens[1:m_index] if t.startswith("-")]
    valid = module_flags(module)
    out += [(valid, t, command) for t in tokens[m_index + 2:] if t.startswith("-") and t != "--"]
    return out


def modules_mentioned(text):
    """The runnable modules a lesson talks about: in commands, as nanochat/scripts/X.py, or as base_train etc."""
    mods = {shlex.split(c)[shlex.split(c).index("-m") + 1] for c in commands(text) if "-m" in shlex.split(c)}
    mods |= {p[:-3].replace("/", ".") for p in PATH_REF.findall(text) if p.startswith("nanochat/scripts/")}
    scripts = {p.stem for p in (ROOT / "nanochat" / "scripts").glob("*.py") if p.stem != "__init__"}
    mods |= {f"nanochat.scripts.{s}" for s in scripts if re.search(rf"(?<![\w.]){s}(?![\w])", prose(text))}
    return mods


@pytest.mark.parametrize("name", ALL_MARKDOWN)
def test_commands_and_flags_exist(name):
    text = read(name)[2]
    for command in commands(text):
        for valid, token, cmd in command_flags(command):
            flag = token.split("=", 1)[0]
            if re.fullmatch(r"-\d[\d.]*", flag):
                continue  # a negative number, not a flag
            assert flag in valid, f"{name}: {flag} is not a flag of `{cmd}`"
    # flags named on their own in the prose must belong to a script (or tool) the lesson talks about
    valid = set()
    for module in modules_mentioned(text):
        valid |= module_flags(module)
    if "nanochat-workbench" in text:
        valid |= workbench_flags()
    if "torchrun" in text:
        valid |= torchrun_flags()
    loose = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", prose(text)))
    for span in code_spans(text):
        if span.startswith("-") and not re.match(r"(python|torchrun|nanochat-workbench)", span):
            loose |= {t.split("=", 1)[0] for t in span.split() if t.startswith("-")}
    for flag in loose:
        assert flag in valid, f"{name}: {flag} is not a flag of any script the lesson names ({sorted(modules_mentioned(text))})"


def test_the_reference_commands_are_really_checked():
    """The flag check above must be able to fail: a made-up flag on a real script is caught."""
    text = "```\npython -m nanochat.scripts.base_train --depth=4 --no_such_flag=1\n```\n"
    bad = [t for valid, t, _ in command_flags(commands(text)[0]) if t.split("=")[0] not in valid]
    assert bad == ["--no_such_flag=1"]


# ---------------------------------------------------------------------------------------------------------------
# numbers in the lessons, recomputed from the code

def test_ln_values_everywhere():
    seen = 0
    for name in LESSON_FILES:
        for n, value in re.findall(r"ln\((\d[\d,]*)\)\s*≈\s*(\d+\.\d+)", flat(read(name)[2])):
            assert shown(value, math.log(number(n))), f"{name}: ln({n}) is not {value}"
            seen += 1
    assert seen >= 3


def test_config_table_of_lesson_03():
    rows = table_rows(body("03-embeddings-and-config.md"), ["n_layer", "n_embd", "n_head", "head_dim"])
    assert {int(r[0]) for r in rows} >= {4, 12, 20}
    for depth, n_layer, n_embd, n_head, n_kv_head, head_dim in rows:
        kw = base_train().model_config_kwargs(int(depth), 2048, 65536)
        assert [number(n_layer), number(n_embd), number(n_head), number(n_kv_head), number(head_dim)] == \
               [kw["n_layer"], kw["n_embd"], kw["n_head"], kw["n_kv_head"], kw["n_embd"] // kw["n_head"]], depth


def test_parameter_counts_of_lesson_03():
    rows = table_rows(body("03-embeddings-and-config.md"), ["wte", "blocks", "lm_head", "total"])
    assert {(int(r[0]), number(r[1])) for r in rows} >= {(4, 65536), (12, 65536), (20, 65536)}
    for depth, vocab, wte, blocks, lm_head, total in rows:
        model = meta_model(int(depth), int(number(vocab)))
        got = (model.transformer.wte.weight.numel(), nparams(model.transformer.h), model.lm_head.weight.numel(),
               nparams(model))
        assert tuple(int(number(v)) for v in (wte, blocks, lm_head, total)) == got, f"depth {depth} vocab {vocab}"


def test_flops_per_token_of_lesson_12():
    text = body("12-training-loop.md")
    rows = table_rows(text, ["depth", "vocab", "seq", "FLOPs per token"])
    assert {(int(r[0]), number(r[1])) for r in rows} >= {(4, 65536), (12, 65536), (20, 65536)}
    for depth, vocab, seq, flops in rows:
        model = meta_model(int(depth), int(number(vocab)), int(number(seq)))
        assert int(number(flops)) == model.estimate_flops(), f"depth {depth}"
    # the d20 breakdown quoted under the table
    m = re.search(r"attention term is ([\d,]+), (\d+)% of the total; the rest is 6 × ([\d,]+) non-embedding", flat(text))
    assert m, "lesson 12 no longer quotes the d20 breakdown"
    model = meta_model(20, 65536)
    c = model.config
    attention = 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * c.sequence_len
    assert int(number(m.group(1))) == attention
    assert int(m.group(2)) == round(100 * attention / model.estimate_flops())
    assert int(number(m.group(3))) == nparams(model) - model.transformer.wte.weight.numel()


def test_learning_rate_schedule_of_lesson_12():
    defaults = base_train().parse_args([])
    rows = table_rows(body("12-training-loop.md"), ["step", "multiplier"])
    for step, mult in rows:
        got = training().lr_multiplier(int(step), 1000, defaults.warmup_ratio, defaults.warmdown_ratio,
                                         defaults.final_lr_frac)
        assert shown(mult, got), f"step {step}: {got}"


def test_gradient_accumulation_examples_of_lesson_12():
    found = re.findall(r"([\d,]+) / \(\s*([\d,]+)\s*·\s*([\d,]+)\s*·\s*(\d+)\) = (\d+)", body("12-training-loop.md"))
    assert len(found) == 3
    for total, rows, seq, ranks, steps in found:
        assert base_train().grad_accum_steps(*(int(number(v)) for v in (total, rows, seq, ranks))) == int(steps)


def test_init_stds_of_lesson_10(monkeypatch):
    """The stds in the table are the ones `GPT._init_weights` passes to `nn.init.normal_` (captured, not
    re-derived), and a real depth-4 model zeroes the last column's weights in `init_weights`."""
    rows = table_rows(body("10-initialisation.md"), ["c_q", "wte", "lm_head"])
    assert {int(r[0]) for r in rows} == {4, 12, 20}
    drawn = []
    real_normal = nn.init.normal_
    monkeypatch.setattr(nn.init, "normal_", lambda tensor, mean=0.0, std=1.0, **kw: drawn.append(std) or real_normal(tensor, mean, std, **kw))
    for depth, n_embd, std, wte_std, zero in rows:
        model = meta_model(int(depth), 256)
        C = model.config.n_embd
        assert C == int(number(n_embd))
        block = model.transformer.h[0]
        for module in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc, model.transformer.wte):
            drawn.clear()
            ref_gpt.GPT._init_weights(model, module)
            quoted = wte_std if module is model.transformer.wte else std
            assert len(drawn) == 1 and shown(quoted, drawn[0]), f"depth {depth}: std {drawn}, the lesson says {quoted}"
        assert number(zero) == 0.0
    monkeypatch.undo()
    torch.manual_seed(0)
    model = ref_gpt.GPT(ref_gpt.GPTConfig(**base_train().model_config_kwargs(4, 64, 256)))
    model.init_weights()
    zeroed = [model.lm_head.weight] + [w for b in model.transformer.h for w in (b.attn.c_proj.weight, b.mlp.c_proj.weight)]
    assert all(torch.count_nonzero(w) == 0 for w in zeroed)
    assert model.transformer.h[0].attn.c_q.weight.std().item() == pytest.approx(number(rows[0][2]), rel=0.03)


def test_the_gradient_wakes_up_as_lesson_10_says():
    text = flat(body("10-initialisation.md"))
    assert "backward 1 lm_head only backward 2 + wte and every c_proj" in text
    assert "backward 3 + c_q, c_k, c_v, c_fc" in text
    torch.manual_seed(0)
    model = ref_gpt.GPT(ref_gpt.GPTConfig(sequence_len=32, vocab_size=256, n_layer=2, n_head=1, n_kv_head=1, n_embd=128))
    model.init_weights()
    optimizers = model.setup_optimizers()
    x, y = torch.randint(0, 256, (2, 32)), torch.randint(0, 256, (2, 32))
    woken = []
    for _ in range(3):
        model(x, y).backward()
        woken.append({n.split(".")[-2] for n, p in model.named_parameters() if p.grad.abs().max() > 0})
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
    assert woken[0] == {"lm_head"}
    assert woken[1] == {"lm_head", "wte", "c_proj"}
    assert woken[2] == {"lm_head", "wte", "c_proj", "c_q", "c_k", "c_v", "c_fc"}


def test_optimiser_numbers_of_lesson_11():
    from nanochat.muon import NS_COEFFS

    text = body("11-optimisers.md")
    m = re.search(r"\(a, b, c\) = \(([-\d.]+), ([-\d.]+), ([-\d.]+)\)", flat(text))
    assert m and tuple(float(v) for v in m.groups()) == NS_COEFFS
    a, b, c = NS_COEFFS
    rows = table_rows(text, ["start σ", "step 1", "step 5"])
    assert len(rows) >= 4
    for row in rows:
        sigma = float(row[0])
        for cell in row[1:]:
            sigma = a * sigma + b * sigma ** 3 + c * sigma ** 5
            assert shown(cell, sigma), row
    for depth, n_embd, scale, head_lr, wte_lr in table_rows(text, ["AdamW scale", "lm_head lr", "wte lr"]):
        model = meta_model(int(depth), 65536)
        assert model.config.n_embd == int(number(n_embd))
        adamw, muon = model.setup_optimizers()
        lm_head_group, wte_group = adamw.param_groups
        assert lm_head_group["params"][0] is model.lm_head.weight
        assert shown(head_lr, lm_head_group["lr"]) and shown(wte_lr, wte_group["lr"])
        assert shown(scale, lm_head_group["lr"] / base_train().parse_args([]).unembedding_lr)
        assert [len(g["params"]) for g in muon.param_groups] == [4 * int(depth), 2 * int(depth)]
        assert all(g["lr"] == 0.02 for g in muon.param_groups)


def test_softcap_table_and_loss_at_init_of_lesson_09():
    tree = ast.parse(Path(ref_gpt.__file__).read_text())
    forward = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "forward"
                   and any(isinstance(t, ast.Assign) and getattr(t.targets[0], "id", None) == "softcap" for t in n.body))
    cap = next(t.value.value for t in forward.body if isinstance(t, ast.Assign) and getattr(t.targets[0], "id", None) == "softcap")
    rows = table_rows(body("09-logits-and-loss.md"), ["raw logit", "after softcap"])
    assert len(rows) >= 4
    for raw, capped in rows:
        assert shown(capped, cap * math.tanh(float(raw) / cap)), raw
    # "the loss is exactly ln V" at initialisation, whatever the input
    torch.manual_seed(0)
    model = ref_gpt.GPT(ref_gpt.GPTConfig(sequence_len=16, vocab_size=4096, n_layer=1, n_head=1, n_kv_head=1, n_embd=128))
    model.init_weights()
    loss = model(torch.randint(0, 4096, (2, 16)), torch.randint(0, 4096, (2, 16)))
    assert loss.item() == pytest.approx(math.log(4096), abs=1e-5)


def test_rmsnorm_example_and_call_count_of_lesson_05(monkeypatch):
    text = body("05-rmsnorm.md")
    x = re.search(r"^x\s+= \[([^\]]+)\]", text, re.M).group(1)
    y = re.search(r"^norm\(x\)\s+= \[([^\]]+)\]", text, re.M).group(1)
    x = torch.tensor([number(v) for v in x.split(",")])
    assert torch.allclose(ref_gpt.norm(x), torch.tensor([number(v) for v in y.split(",")]), atol=1e-6)
    calls = int(re.search(r"(\d+) for the depth-4 workbench model", flat(text)).group(1))
    counted = []
    real = ref_gpt.norm
    monkeypatch.setattr(ref_gpt, "norm", lambda t: counted.append(1) or real(t))
    model = ref_gpt.GPT(ref_gpt.GPTConfig(**base_train().model_config_kwargs(4, 8, 64)))
    model.init_weights()
    model(torch.randint(0, 64, (1, 8)))
    assert len(counted) == calls == 4 * 4 + 2


def test_rotary_numbers_of_lesson_06():
    text = body("06-rotary-embeddings.md")
    # speeds of the pairs, from the reference's own table for head_dim 128
    model = meta_model(4, 64)  # head_dim 128; recompute the table on the cpu
    cos, sin = model._precompute_rotary_embeddings(2, 128, device=torch.device("cpu"))
    speed = torch.atan2(sin[0, 1, 0], cos[0, 1, 0])  # radians turned between position 0 and 1, per pair
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.,]+) positions$", text, re.M)
    assert len(rows) == 3
    for pair, rad, period in rows:
        assert shown(rad, speed[int(pair)].item(), significant=True), f"pair {pair}"
        assert shown(period, 2 * math.pi / speed[int(pair)].item()), f"pair {pair}"
    # the worked example in two dimensions, through apply_rotary_emb
    q = re.search(r"q = \(([-\d.]+), ([-\d.]+)\) and k = \(([-\d.]+), ([-\d.]+)\)", flat(text))
    q, k = torch.tensor([float(q.group(1)), float(q.group(2))]), torch.tensor([float(q.group(3)), float(q.group(4))])
    tiny = ref_gpt.GPT(ref_gpt.GPTConfig(sequence_len=2, vocab_size=4, n_layer=1, n_head=1, n_kv_head=1, n_embd=2))

    def rotate(v, pos):
        return ref_gpt.apply_rotary_emb(v.view(1, 1, 1, 2), tiny.cos[:, pos:pos + 1], tiny.sin[:, pos:pos + 1]).view(2)

    num = r"(-?\d+\.\d+)"
    rows = re.findall(rf"^\s+(\d+)\s+(\d+)\s+(-?\d+)\s+\(\s*{num},\s*{num}\)\s+\(\s*{num},\s*{num}\)\s+{num}$", text, re.M)
    assert len(rows) == 4
    for m_pos, n_pos, diff, q1, q2, k1, k2, dot in rows:
        qr, kr = rotate(q, int(m_pos)), rotate(k, int(n_pos))
        assert int(diff) == int(m_pos) - int(n_pos)
        assert all(shown(s, v) for s, v in zip((q1, q2, k1, k2, dot), (*qr.tolist(), *kr.tolist(), (qr @ kr).item())))


def test_attention_example_and_kv_cache_size_of_lesson_07():
    from nanochat.engine import KVCache

    text = body("07-attention.md")
    block = next(f for f in fences(text) if "softmax      =" in f)
    vec = r"\(\s*(−?[\d.]+),\s*(−?[\d.]+)\)"
    vectors = {name: torch.tensor([number(a), number(b)]) for name, a, b in re.findall(rf"([qkv][₀₁₂]) = {vec}", block)}
    q = vectors["q₂"]
    K = torch.stack([vectors[f"k{i}"] for i in "₀₁₂"])
    V = torch.stack([vectors[f"v{i}"] for i in "₀₁₂"])
    weights = re.search(r"softmax\s+=\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", block).groups()
    output = re.search(r"^\s*output\s.*=\s+\(([\d.]+), ([\d.]+)\)\s*$", block, re.M).groups()
    # the same query as the last of a causal sequence of three, through the attention the model uses
    Q = torch.stack([torch.zeros(2), torch.zeros(2), q])
    y = F.scaled_dot_product_attention(Q[None, None], K[None, None], V[None, None], is_causal=True)[0, 0, 2]
    assert all(shown(s, v) for s, v in zip(output, y.tolist())), y
    assert all(shown(s, v) for s, v in zip(weights, torch.softmax(K @ q / math.sqrt(2), -1).tolist()))
    # KV-cache bytes per token for d20 in bf16, from the cache the Engine allocates
    m = re.search(r"d20, bf16: 2 · 20 · 10 · 128 · 2 = ([\d,]+) bytes", flat(text))
    config = meta_model(20, 65536).config
    cache = KVCache(batch_size=1, num_heads=config.n_kv_head, seq_len=1, head_dim=config.n_embd // config.n_head,
                    num_layers=config.n_layer)
    k = torch.zeros(1, config.n_kv_head, 1, config.n_embd // config.n_head, dtype=torch.bfloat16)
    cache.insert_kv(0, k, k)
    assert int(number(m.group(1))) == cache.kv.numel() * cache.kv.element_size()


def speedrun_figures(depth):
    model = meta_model(depth, 65536)
    n = nparams(model)
    args = types.SimpleNamespace(num_iterations=-1, target_flops=-1.0, target_param_data_ratio=20.0,
                                 total_batch_size=SPEEDRUN_BATCH)
    steps, _ = base_train().horizon(args, n, model.estimate_flops())
    tokens = steps * SPEEDRUN_BATCH
    return n, steps, tokens, model.estimate_flops(), model.estimate_flops() * tokens


def test_speedrun_figures_of_lesson_16():
    text = body("16-distributed-and-speedrun.md")
    values = {label: value for label, value in table_rows(text, ["quantity", "value"])}
    n, steps, tokens, per_token, total = speedrun_figures(20)
    assert number(values["parameters (d20, vocab 65,536)"]) == n
    assert number(values["training tokens (20 per param)"]) == tokens == 20 * n
    assert number(values["tokens per step"]) == SPEEDRUN_BATCH == base_train().parse_args([]).total_batch_size
    assert number(values["steps"]) == steps
    assert number(values["FLOPs per token"]) == per_token
    assert values["total FLOPs"] == f"{total:.2e}"
    # the budget table: 8 H100s at the bf16 peak base_train knows, 40% MFU, $24 per node-hour
    assert "8 H100s (989 TFLOP/s bf16 each), 40% MFU and $24 per node-hour" in flat(text)
    peak = dict(training().GPU_PEAK_FLOPS)["H100"]
    assert peak == 989e12
    rows = table_rows(text, ["parameters", "steps", "total FLOPs", "hours", "dollars"])
    assert {int(r[0]) for r in rows} >= {12, 20, 32}
    for depth, params, nsteps, flops, hours, dollars in rows:
        n, steps, tokens, per_token, total = speedrun_figures(int(depth))
        assert (number(params), number(nsteps)) == (n, steps)
        assert flops == f"{total:.2e}"
        h = total / (0.4 * 8 * peak) / 3600
        assert hours == f"{h:.1f}" and int(dollars) == round(h * 24)


def test_chatcore_recomputation_of_lesson_15():
    text = body("15-evaluation.md")
    card = {row[0]: row[1:] for row in table_rows(text, ["metric", "BASE", "MID", "SFT", "RL"])}
    baselines = {"ARC-Easy": 0.25, "ARC-Challenge": 0.25, "MMLU": 0.25, "GSM8K": 0.0, "HumanEval": 0.0}
    for column in (1, 2):  # MID, SFT
        centred = [(float(card[t][column]) - b) / (1 - b) for t, b in baselines.items()]
        assert shown(card["ChatCORE"][column], sum(centred) / len(centred))
    block = next(f for f in fences(text) if "mean" in f and "ARC-Easy" in f)
    for task, acc, base, value in re.findall(r"(\S+)\s+\(([\d.]+) − ([\d.]+)\)\s+/ [\d.]+\s+= ([\d.]+)", block):
        assert float(acc) == float(card[task][2]) and float(base) == baselines[task]
        assert shown(value, (float(acc) - float(base)) / (1 - float(base)))


def test_bpe_example_and_split_pattern_of_lesson_02():
    import regex
    import rustbpe
    import tiktoken

    from nanochat.tokenizer import EMBEDDED_VOCAB_SIZE, SPECIAL_TOKENS, SPLIT_PATTERN

    text = body("02-tokenization.md")
    # the pattern, one alternative per line, is the real one
    block = next(f for f in fences(text) if f.startswith("'(?i:"))
    assert "|".join(block.strip("\n").split("\n")) == SPLIT_PATTERN
    # the example split
    m = re.search(r"^  (.+)\n  (\[.*?\])$", next(f for f in fences(text) if "Hello world!" in f), re.M | re.S)
    assert regex.findall(SPLIT_PATTERN, m.group(1)) == ast.literal_eval(re.sub(r"\s*\n\s*", " ", m.group(2)))
    # the first merges of the worked example, from our trainer; the counts from the tokenizer of the merges before
    sample = re.search(r'^text = "(.*)"$', text, re.M).group(1)
    rows = re.findall(r"^  (\d{3})\s+'(.*?)' \+ '(.*?)'\s+(\d+)\s+'(.*?)'$", text, re.M)
    assert len(rows) == 8
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter([sample]), 256 + len(rows), pattern=SPLIT_PATTERN)
    ranks = sorted(((bytes(b), r) for b, r in trainer.get_mergeable_ranks()), key=lambda kv: kv[1])
    for i, (rank, left, right, count, merged) in enumerate(rows):
        assert ranks[256 + i] == (merged.encode(), int(rank)) and (left + right) == merged
        before = tiktoken.Encoding(name=f"m{i}", pat_str=SPLIT_PATTERN, mergeable_ranks=dict(ranks[:256 + i]),
                                   special_tokens={})
        pieces = [before.decode_single_token_bytes(t) for t in before.encode_ordinary(sample)]
        pairs = sum(1 for a, b in zip(pieces, pieces[1:]) if (a, b) == (left.encode(), right.encode()))
        assert pairs == int(count), f"merge {rank}: the pair occurs {pairs} times"
    # the special tokens and the size arithmetic
    listed = re.findall(r"<\|\w+\|>", next(f for f in fences(text) if "start of every document" in f))
    assert sorted(set(listed)) == sorted(SPECIAL_TOKENS)
    m = re.search(r"so ([\d,]+) means 256 bytes, ([\d,]+) merges and (\d+) specials", flat(text))
    assert number(m.group(1)) == EMBEDDED_VOCAB_SIZE
    assert number(m.group(2)) == EMBEDDED_VOCAB_SIZE - 256 - len(SPECIAL_TOKENS) and int(m.group(3)) == len(SPECIAL_TOKENS)


@pytest.mark.slow
def test_compression_table_of_lesson_02(tmp_path, monkeypatch):
    """bytes per token on the embedded corpus's val split, for the tokenizers of lesson 2's table.

    One rustbpe training at the largest size; smaller vocabularies are prefixes of its merge list (training is
    greedy, so the first k merges are what a k-merge run produces). The corpus contains the lessons themselves and
    Python's own documentation, so the figures may move by a few hundredths: one decimal is quoted, and the
    tolerance is 0.15 bytes per token."""
    import rustbpe
    import tiktoken

    from nanochat import embedded_corpus
    from nanochat.tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN

    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    rows = [(int(number(v)), float(b)) for v, b in table_rows(body("02-tokenization.md"), ["vocabulary", "bytes per token"])]
    assert [v for v, _ in rows] == [256, 512, 1024, 2048, 4096, 8192]
    train, val = embedded_corpus.split("train"), embedded_corpus.split("val")
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(train), max(v for v, _ in rows) - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = sorted(((bytes(b), r) for b, r in trainer.get_mergeable_ranks()), key=lambda kv: kv[1])
    nbytes = sum(len(d.encode("utf-8")) for d in val)
    for vocab, quoted in rows:
        n_ranks = 256 if vocab == 256 else vocab - len(SPECIAL_TOKENS)
        enc = tiktoken.Encoding(name=f"v{vocab}", pat_str=SPLIT_PATTERN, mergeable_ranks=dict(ranks[:n_ranks]),
                                special_tokens={})
        ntokens = sum(len(ids) for ids in enc.encode_ordinary_batch(val))
        assert abs(nbytes / ntokens - quoted) <= 0.15, f"vocab {vocab}: {nbytes / ntokens:.3f} bytes per token"


def test_conversation_masks_of_lesson_14():
    """The mask drawn under the rendered conversation is what render_conversation produces."""
    from nanochat.tokenizer import RustBPETokenizer

    text = body("14-mid-sft-rl.md")
    source = next(f for f in fences(text, "python") if "conversation = {" in f)
    conversation = ast.literal_eval(re.search(r"conversation = (\{.*?\]\})\n", source, re.S).group(1))
    drawing = next(f for f in fences(text) if "<|bos|>" in f and "<|assistant_end|>" in f)
    lines = [ln for ln in drawing.splitlines() if ln.strip()]
    expected = []  # (piece, mask) in order, from each line of pieces and the line of masks under it
    for pieces_line, masks_line in zip(lines[0::2], lines[1::2]):
        pieces = [p.strip() for p in re.split(r"(<\|\w+\|>)", pieces_line) if p.strip()]
        masks = [int(m) for m in masks_line.split()]
        assert len(pieces) == len(masks), pieces_line
        expected += list(zip(pieces, masks))
    tokenizer = RustBPETokenizer.train_from_iterator(iter(["What is 12*7? Let me compute. It is 84."]), 300)
    ids, mask = tokenizer.render_conversation(conversation)

    def runs(pairs):
        """Consecutive pieces with the same mask, joined, spaces dropped."""
        out = []
        for piece, m in pairs:
            if out and out[-1][1] == m:
                out[-1][0] += piece
            else:
                out.append([piece, m])
        return [(p.replace(" ", ""), m) for p, m in out]

    assert runs((tokenizer.decode([i]), m) for i, m in zip(ids, mask)) == runs(expected)


def test_derived_figures_of_lessons_01_and_03():
    # lesson 1: the FLOPs of one laptop step (depth 4, embedded vocabulary, 512 tokens)
    m = re.search(r"One training step on (\d+) tokens costs it about (\d+) billion FLOPs", flat(body("01-pipeline.md")))
    from nanochat.tokenizer import EMBEDDED_VOCAB_SIZE

    model = meta_model(4, EMBEDDED_VOCAB_SIZE, int(m.group(1)))
    assert round(model.estimate_flops() * int(m.group(1)) / 1e9) == int(m.group(2))
    # lesson 3: the share of embedding + head, and the growth of the blocks
    text = flat(body("03-embeddings-and-config.md"))
    m = re.search(r"At depth 4 with the big vocabulary they are (\d+)% of the model; at depth 20 they are (\d+)%", text)
    for depth, quoted in ((4, m.group(1)), (20, m.group(2))):
        model = meta_model(depth, 65536)
        share = (model.transformer.wte.weight.numel() + model.lm_head.weight.numel()) / nparams(model)
        assert round(100 * share) == int(quoted), depth
    m = re.search(r"d20 has (\d+) times the block parameters of d4", text)
    assert nparams(meta_model(20, 65536).transformer.h) == int(m.group(1)) * nparams(meta_model(4, 65536).transformer.h)

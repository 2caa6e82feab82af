"""`nanochat-workbench check --json` is a contract: its keys and values must not change when the code behind it
does. A few files (the skeleton, the reference, planted bugs, a syntax error, an exit) are checked by the real
warm worker and compared, key by key, with tests/golden/check_json.json (timings and paths normalised).

After an intended change of the contract: `NANOCHAT_UPDATE_GOLDEN=1 python -m pytest tests/test_check_json_golden.py`.
"""

import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "check_json.json"
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
SKELETON = (ROOT / "workbench" / "course" / "templates" / "learner_gpt.py").read_text()
CHECK_TIMEOUT = 120
CHILD_STRATEGIES = ("fork", "spawn")  # the same answers from a forked child and a warm spare (tests/conftest.py)


def planted(old: str, new: str) -> str:
    assert old in REFERENCE, f"the reference no longer contains {old!r}: update the case"
    return REFERENCE.replace(old, new, 1)


CASES = {
    "skeleton": SKELETON,
    "reference": REFERENCE,
    "relu": planted("x = F.relu(x).square()", "x = F.relu(x)"),
    "wrong_math": planted("x = F.relu(x).square()", "x = F.relu(x).square() * 1.01"),
    "float_rounding": planted("        x = x + self.mlp(norm(x))\n        return x",
                              "        x = x + self.mlp(norm(x))\n        return (x + 4096.0) - 4096.0"),
    "syntax_error": REFERENCE.replace("class GPT(nn.Module):", "class GPT(nn.Module)", 1),
    "exits": planted("        x = x + self.mlp(norm(x))\n        return x",
                     "        import os; os._exit(3)"),
}
TIMING_KEYS = {"seconds", "timings"}


def normalise(value, folder: str, key: str = ""):
    """Timings out, the temp folder replaced, floats to 4 significant digits (the same on any CPU); of a
    traceback only the frames in the learner's file (the workbench's and torch's own move with any edit)."""
    if isinstance(value, dict):
        return {k: normalise(v, folder, k) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [normalise(v, folder) for v in value]
    if isinstance(value, str):
        value = value.replace(folder, "<dir>")
        if key == "traceback":
            return "\n".join(line.strip() for line in value.splitlines() if "<dir>" in line)
        return value
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


@pytest.fixture(scope="module")
def results(runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("golden")
    out = {}
    for name, text in CASES.items():
        path = folder / f"{name}.py"
        path.write_text(text)
        printed = json.dumps(runner.run_sync(path), indent=1)  # exactly what `check --json` prints
        out[name] = normalise(json.loads(printed), str(folder))
    return out


def test_check_json_keys_and_values_match_the_golden_file(results):
    if os.environ.get("NANOCHAT_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(results, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(results) == sorted(golden)
    for name in golden:
        got, want = results[name], golden[name]
        assert sorted(got) == sorted(want), f"{name}: top-level keys differ"
        for key in want:
            if key == "components":
                for g, w in zip(got[key], want[key], strict=True):
                    assert g == w, f"{name}: component {w['qualname']} differs"
            else:
                assert got[key] == want[key], f"{name}: {key!r} differs"


def test_golden_cases_cover_every_status_and_error_kind():
    golden = json.loads(GOLDEN.read_text())
    statuses = {c["status"] for r in golden.values() for c in r["components"]}
    assert statuses >= {"pass", "mismatch", "todo", "skipped"}
    assert {r["error"]["type"] for r in golden.values() if r["error"]} >= {"SyntaxError", "Exit"}
    assert any(c.get("verdict") == "float noise" for r in golden.values() for c in r["components"])

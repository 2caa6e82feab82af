"""The component checks, end to end through the real warm worker: the skeleton, the reference, filling the
skeleton method by method, planted bugs each caught by the right component with a useful reason, float noise
told apart from wrong math."""

import ast
import math
import pathlib

import pytest

from workbench.course.phases import ALL_METHODS, PHASES, phase_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "nanochat" / "gpt.py").read_text()
SKELETON = (ROOT / "workbench" / "course" / "templates" / "learner_gpt.py").read_text()
CHILD_STRATEGIES = ("fork", "spawn")  # every check test once per child strategy (tests/conftest.py)
CHECK_TIMEOUT = 120  # the module's runner (tests/conftest.py): whole-file checks with 20 training steps


def planted(replacements):
    text = REFERENCE
    for old, new in replacements:
        assert old in text, f"the reference no longer contains {old!r}: update the planted bug"
        text = text.replace(old, new, 1)
    return text


def by_name(result):
    return {c["qualname"]: c for c in result["components"]}


def failing(result):
    return [c["qualname"] for c in result["components"] if c["status"] != "pass"]


# ---------------------------------------------------------------------------------------------------------------


def test_untouched_skeleton_is_todo_everywhere_and_names_gpt_init(runner, write):
    result = runner.run_sync(write("learner_gpt.py", SKELETON))
    assert result["ok"] is False
    assert result["stage"] == "construct"
    assert result["error"] is None
    todo = result["next_todo"]
    assert todo["qualname"] == "GPT.__init__" and todo["phase"] == 1
    assert todo["message"].startswith("TODO")
    assert todo["file"].endswith("learner_gpt.py") and isinstance(todo["line"], int)
    statuses = {c["qualname"]: c["status"] for c in result["components"]}
    assert set(statuses.values()) == {"todo"}, statuses
    for method in ALL_METHODS:  # every method of the learner's path has its own row
        assert statuses[method] == "todo"


def test_reference_copied_verbatim_passes_every_component(runner, write):
    result = runner.run_sync(write("gpt.py", REFERENCE))
    assert failing(result) == []
    assert result["ok"] is True and result["stage"] == "done"
    assert result["next_todo"] is None and result["error"] is None
    losses = result["losses"]
    assert len(losses) == 2 and abs(losses[0] - math.log(result["config"]["vocab_size"])) < 1e-3
    assert losses[1] < losses[0]
    # the forward pass was observed: every block's modules and the norm / rotary calls, with shapes
    names = [row["name"] for row in result["shapes"]]
    assert "transformer.h.3.mlp.c_fc" in names and "lm_head" in names
    calls = [row for row in result["shapes"] if row["kind"] == "function"]
    assert sum(r["name"] == "apply_rotary_emb" for r in calls) == 2 * 4
    assert sum(r["name"] == "norm" for r in calls) == 2 + 4 * 4  # embedding, final, and 4 per block
    lm_head = next(r for r in result["shapes"] if r["name"] == "lm_head")
    assert lm_head["output"] == [1, 512, result["config"]["vocab_size"]] and lm_head["nonfinite"] is False


def _function_spans(text):
    """qualname -> (first line, last line) of every top-level function and method, decorators included."""
    spans = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            spans[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    spans[f"{node.name}.{item.name}"] = item
    return {q: (min([n.lineno] + [d.lineno for d in n.decorator_list]), n.end_lineno) for q, n in spans.items()}


def fill(skeleton, reference, qualnames):
    """The skeleton with the given methods replaced by the reference's source (via the syntax trees)."""
    lines, ref_lines = skeleton.splitlines(), reference.splitlines()
    ours, theirs = _function_spans(skeleton), _function_spans(reference)
    for q in sorted(qualnames, key=lambda q: ours[q][0], reverse=True):
        a, b = ours[q]
        c, d = theirs[q]
        lines[a - 1:b] = ref_lines[c - 1:d]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_filling_the_skeleton_method_by_method_walks_the_next_todo_in_phase_order(runner, tmp_path):
    path = tmp_path / "learner_gpt.py"
    filled, last_phase = [], 1
    for method in ALL_METHODS:
        filled.append(method)
        path.write_text(fill(SKELETON, REFERENCE, filled))
        result = runner.run_sync(path)
        rows = by_name(result)
        for done in filled:  # every method filled in so far passes on its own
            assert rows[done]["status"] == "pass", (done, rows[done])
        todo = result["next_todo"]
        if len(filled) < len(ALL_METHODS):
            assert result["error"] is None, result["error"]
            assert todo is not None and todo["qualname"] not in filled, (filled, todo)
            assert todo["phase"] == phase_of(todo["qualname"]) >= last_phase
            last_phase = todo["phase"]
    assert todo is None and result["ok"] is True and failing(result) == []


@pytest.mark.slow
def test_complete_learner_file_trains_for_20_steps(runner, write):
    text = fill(SKELETON, REFERENCE, ALL_METHODS)
    result = runner.run_sync(write("learner_gpt.py", text), steps=20)
    assert result["ok"] is True and failing(result) == []
    losses = result["losses"]
    assert len(losses) == 21 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 1.0  # it really learns the batch
    assert by_name(result)["training"]["status"] == "pass"


SDPA = "            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=enable_gqa)"
PLANTED_BUGS = {
    "relu instead of relu²": (
        [("x = F.relu(x).square()", "x = F.relu(x)")], "MLP.forward", "relu instead of relu²"),
    "no QK-norm": (
        [("        q, k = norm(q), norm(k)\n", "")], "CausalSelfAttention.forward", "normalise queries and keys"),
    "rotary sign flipped": (
        [("y1 = x1 * cos + x2 * sin", "y1 = x1 * cos - x2 * sin"), ("y2 = x1 * (-sin) + x2 * cos", "y2 = x1 * sin + x2 * cos")],
        "apply_rotary_emb", "rotates by +θ; the reference rotates by −θ"),
    "no softcap": (
        [("        logits = softcap * torch.tanh(logits / softcap)\n", "")], "GPT.forward", "does not softcap"),
    "missing residual": (
        [("x = x + self.mlp(norm(x))", "x = self.mlp(norm(x))")], "Block.forward", "no residual connection around the MLP"),
    "wrong init std": (
        [("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 0.02")],
        "GPT._init_weights", "the reference's init gives"),
    "lm_head not zeroed": (
        [("        torch.nn.init.zeros_(self.lm_head.weight)\n", "")], "GPT.init_weights", "lm_head.weight should start at zero"),
    "a matrix in the AdamW group": (
        [("embedding_params = list(self.transformer.wte.parameters())",
          "embedding_params = list(self.transformer.wte.parameters()) + [self.transformer.h[0].attn.c_q.weight]"),
         ("matrix_params = list(self.transformer.h.parameters())",
          "matrix_params = [p for p in self.transformer.h.parameters() if p is not self.transformer.h[0].attn.c_q.weight]")],
        "GPT.setup_optimizers", "transformer.h.0.attn.c_q.weight is optimised by AdamW"),
    "KV cache off by one (T0)": (
        [("T0 = 0 if kv_cache is None else kv_cache.get_pos()", "T0 = 0 if kv_cache is None else max(kv_cache.get_pos() - 1, 0)")],
        "KV-cache decoding", "kv_cache.get_pos()"),
    "LayerNorm for RMSNorm": (
        [("    return F.rms_norm(x, (x.size(-1),))", "    return F.layer_norm(x, (x.size(-1),))")], "norm", "LayerNorm"),
    "attention not causal": (
        [("y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=enable_gqa)",
          "y = F.scaled_dot_product_attention(q, k, v, is_causal=False, enable_gqa=enable_gqa)")],
        "CausalSelfAttention.forward", "not causal"),
    "GQA heads shared in the wrong order": (
        [("            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=enable_gqa)",
          "            if enable_gqa:\n"
          "                k = k.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
          "                v = v.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
          "            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)")],
        "CausalSelfAttention.forward", "shares key/value heads in the wrong order"),
    "graph cut by detach": (
        [("        x = norm(x)\n        for block", "        x = norm(x).detach()\n        for block")],
        "gradients", "no gradient reaches transformer.wte.weight"),
    "targets shifted twice": (
        [("        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,",
          "        logits, targets = logits[:, :-1].contiguous(), targets[:, 1:]\n"
          "        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,")],
        "GPT.forward", "shifts the targets again"),
    "softmax over the queries in hand-written attention": (
        [(SDPA, "            if enable_gqa:\n"
                "                k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)\n"
                "                v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)\n"
                "            att = (q @ k.transpose(-2, -1)) / (q.size(-1) ** 0.5)\n"
                "            att = att.masked_fill(~torch.ones(Tq, Tk, dtype=torch.bool).tril(), float('-inf'))\n"
                "            y = torch.softmax(att, dim=-2) @ v")],
        "CausalSelfAttention.forward", "softmax over the queries (dim=-2)"),
    "no transpose to (B, H, T, D)": (
        [("        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)\n", ""),
         ("        y = y.transpose(1, 2).contiguous().view(B, T, -1)", "        y = y.contiguous().view(B, T, -1)")],
        "CausalSelfAttention.forward", "attends across the heads axis instead of the positions"),
    "y not transposed back": (
        [("        y = y.transpose(1, 2).contiguous().view(B, T, -1)", "        y = y.contiguous().view(B, T, -1)")],
        "CausalSelfAttention.forward", "merges the heads without transposing y back"),
    "generate ignores temperature": (
        [("            if temperature > 0:\n                probs", "            if False:\n                probs")],
        "GPT.generate", "your tokens are the greedy ones"),
    "FLOPs counting the embedding": (
        [("return 6 * (nparams - nparams_embedding) + 12 * l * h * q * t", "return 6 * nparams + 12 * l * h * q * t")],
        "GPT.estimate_flops", "counts the embedding"),
}


@pytest.mark.parametrize("bug", list(PLANTED_BUGS))
def test_planted_bug_is_flagged_on_the_right_component(runner, bug, write):
    replacements, component, reason = PLANTED_BUGS[bug]
    result = runner.run_sync(write("learner_gpt.py", planted(replacements)))
    assert result["ok"] is False
    rows = by_name(result)
    assert rows[component]["status"] == "mismatch", rows[component]
    assert reason in rows[component]["detail"], rows[component]["detail"]
    assert result["lead"] == component  # the first failing component in data-flow order is the culprit
    # components upstream of the bug are not blamed
    order = [c["qualname"] for c in result["components"]]
    for c in result["components"][:order.index(component)]:
        assert c["status"] == "pass", (c["qualname"], c["detail"])


def test_mismatch_rerun_in_float64_tells_wrong_math_from_float_noise(runner, write):
    # adding and removing a large constant loses fp32 precision (noise), not correctness
    noisy = planted([("        x = x + self.mlp(norm(x))\n        return x",
                      "        x = x + self.mlp(norm(x))\n        return (x + 4096.0) - 4096.0")])
    result = runner.run_sync(write("noisy.py", noisy))
    block = by_name(result)["Block.forward"]
    assert block["status"] == "pass", block
    assert "float64" in block["detail"] and "float rounding" in block["detail"]
    assert block["max_abs_diff"] > 1e-4

    wrong = planted([("x = F.relu(x).square()", "x = F.relu(x).square() * 1.01")])
    mlp = by_name(runner.run_sync(write("wrong.py", wrong)))["MLP.forward"]
    assert mlp["status"] == "mismatch" and mlp["verdict"] == "wrong math"
    assert mlp["max_abs_diff_float64"] is not None and mlp["max_abs_diff_float64"] > 1e-4


def test_editing_the_file_cannot_fake_a_pass(runner, write):
    # a file that overrides the workbench's comparison helpers in the check process still fails: the verdicts
    # are made in the worker, from tensors the learner's code produced
    cheat = planted([("x = F.relu(x).square()", "x = F.relu(x)")]) + (
        "\nimport workbench.check.child, workbench.check.judge\n"
        "workbench.check.child._differs = lambda *a, **k: False\n"
        "workbench.check.judge.max_abs_diff = lambda *a, **k: 0.0\n"
        "CHECKS_PASS = True\n"
    )
    result = runner.run_sync(write("cheat.py", cheat))
    assert result["ok"] is False
    assert by_name(result)["MLP.forward"]["status"] == "mismatch"


def test_methods_are_checked_in_isolation_before_init_is_written(runner, write):
    # only MLP.forward written: it is checked on the reference's layout and passes; its neighbours stay TODO
    result = runner.run_sync(write("learner_gpt.py", fill(SKELETON, REFERENCE, ["MLP.forward"])))
    rows = by_name(result)
    assert rows["MLP.forward"]["status"] == "pass"
    assert "reference's layout" in rows["MLP.forward"]["detail"]
    assert rows["MLP.__init__"]["status"] == "todo"
    assert result["next_todo"]["qualname"] == "GPT.__init__"


def test_phases_table_and_rows_agree():
    from workbench.check.judge import ROWS
    names = [q for q, _, _ in ROWS]
    for phase in PHASES:
        for method in phase.methods:
            assert method in names and phase_of(method) == phase.number

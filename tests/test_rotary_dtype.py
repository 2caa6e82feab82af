"""Rotary tables kept in bfloat16 (issue 10, item 5): nanochat's late-2025 code keeps cos/sin in bfloat16 on every
device and asserts it in GPT.forward. Such a file passes on its math, every row says so in a note, and no row
crashes on the assert; genuinely wrong rotary math kept in bfloat16 still fails."""

from workbench.check import child

REFERENCE = open(child.__file__.replace("workbench/check/child.py", "nanochat/gpt.py")).read()
CUDA_ONLY = '''        if device.type == "cuda":
            cos, sin = cos.bfloat16(), sin.bfloat16()
'''
POSITIONS = '''        T0 = 0 if kv_cache is None else kv_cache.get_pos()
'''
assert REFERENCE.count(CUDA_ONLY) == 1 and REFERENCE.count(POSITIONS) == 1
ASSERT = '        assert self.cos.dtype == torch.bfloat16, "Rotary embeddings must be in bfloat16"\n'
BF16 = (REFERENCE.replace(CUDA_ONLY, "        cos, sin = cos.bfloat16(), sin.bfloat16()  # bfloat16 on every device\n")
        .replace(POSITIONS, POSITIONS + ASSERT))
GPT_ROWS = ("GPT.forward", "GPT (whole model)", "gradients")


def rows(result):
    return {c["qualname"]: c for c in result["components"]}


def test_module_float64_keeps_low_precision_buffers():
    import torch

    module = torch.nn.Linear(2, 2)
    module.register_buffer("cos", torch.ones(3, dtype=torch.bfloat16), persistent=False)
    module.register_buffer("scale", torch.ones(3))
    m64 = child.module_float64(module)
    assert m64.weight.dtype == torch.float64 and m64.scale.dtype == torch.float64
    assert m64.cos.dtype == torch.bfloat16 and module.weight.dtype == torch.float32


def test_bf16_tables_with_an_assert_pass_every_row_with_a_dtype_note(runner, write):
    result = runner.run_sync(write("learner_gpt.py", BF16))
    assert result["error"] is None
    failing = [(c["qualname"], c["status"], c["detail"]) for c in result["components"] if c["status"] != "pass"]
    assert failing == [] and result["ok"] is True
    r = rows(result)
    assert "bfloat16" in r["GPT._precompute_rotary_embeddings"]["detail"]
    for name in ("GPT._precompute_rotary_embeddings",) + GPT_ROWS:
        assert any("bfloat16" in note for note in r[name]["notes"]), name
    assert "AssertionError" not in str(result)
    assert "notes" not in r["MLP.forward"]


def test_wrong_rotary_math_in_bf16_still_fails(runner, write):
    swapped = BF16.replace("cos, sin = freqs.cos(), freqs.sin()", "cos, sin = freqs.sin(), freqs.cos()")
    assert swapped != BF16
    r = rows(runner.run_sync(write("learner_gpt.py", swapped)))
    assert r["GPT._precompute_rotary_embeddings"]["status"] == "mismatch"
    assert "cos and sin are swapped" in r["GPT._precompute_rotary_embeddings"]["detail"]
    assert r["GPT.forward"]["status"] == "pass"  # checked on the reference's tables (in bfloat16): isolated
    assert r["GPT (whole model)"]["status"] == "mismatch"  # the learner's own (wrong) tables stay in the whole model
    assert "AssertionError" not in r["GPT (whole model)"]["detail"]


def test_wrong_rotation_with_bf16_tables_still_fails(runner, write):
    wrong = (BF16.replace("y1 = x1 * cos + x2 * sin", "y1 = x1 * cos - x2 * sin")
             .replace("y2 = x1 * (-sin) + x2 * cos", "y2 = x1 * sin + x2 * cos"))
    assert wrong != BF16
    result = runner.run_sync(write("learner_gpt.py", wrong))
    r = rows(result)
    assert result["ok"] is False
    assert r["apply_rotary_emb"]["status"] == "mismatch" and "+θ" in r["apply_rotary_emb"]["detail"]
    assert r["GPT (whole model)"]["status"] == "mismatch"
    assert all("AssertionError" not in r[name]["detail"] for name in GPT_ROWS + ("KV-cache decoding",))

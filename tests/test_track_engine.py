"""The engine track: a verbatim copy of nanochat/engine.py passes every row; a planted bug fails the row of the
function that has it, with the mistake named; a TODO is a TODO; the reference's own functions are not the
learner's; the spec's challenges each plant a bug the check blames where the challenge says."""

from pathlib import Path

import pytest
import torch

from fixtures.tracks import write_planted

import nanochat.engine as reference
from nanochat.model_source import ENGINE, load_learner
from workbench.check.result import Status
from workbench.tracks.base import Track, track_spec
from workbench.tracks.child import run_check
from workbench.tracks.engine.probes import check
from workbench.tracks.engine.spec import CHALLENGES, EXERCISES, SPEC

SOURCE = open(reference.__file__, encoding="utf-8").read()
QUALNAMES = [e.qualname for e in EXERCISES]


def planted(tmp_path, edits, name="learner_engine.py"):
    path = write_planted(reference.__file__, edits, tmp_path / name)
    kind = ENGINE.__class__(**{**ENGINE.__dict__, "allow_todos": True})
    return load_learner(str(path), kind)


def by_name(rows):
    return {r["qualname"]: r for r in rows}


def failing(rows):
    return {r["qualname"]: r["detail"] for r in rows if r["status"] != Status.PASS}


def test_spec_is_the_engine_track():
    assert track_spec(Track.ENGINE) is SPEC
    (file,) = SPEC.files
    assert (file.learner_file, file.reference_module) == ("learner_engine.py", "nanochat.engine")
    for qualname in QUALNAMES:  # every exercise is a real function of the reference
        obj = reference
        for part in qualname.split("."):
            obj = getattr(obj, part)
        assert callable(obj)


def test_a_verbatim_copy_passes_every_row(tmp_path):
    rows = check(planted(tmp_path, ()), reference)
    assert [r["qualname"] for r in rows] == QUALNAMES
    assert failing(rows) == {}


PLANTED = [
    ("stuck position", [("        if layer_idx == self.num_layers - 1:\n            self.pos = t1\n", "")],
     "KVCache.insert_kv", "does not advance after the last layer"),
    ("position per layer", [("        if layer_idx == self.num_layers - 1:\n            self.pos = t1\n",
                             "        self.pos += T\n")],
     "KVCache.insert_kv", "advances after layer 0"),
    ("only new keys", [("        k_all = self.kv[layer_idx, 0, :, :, :t1]\n"
                        "        v_all = self.kv[layer_idx, 1, :, :, :t1]", "        k_all, v_all = k, v")],
     "KVCache.insert_kv", "returns only the new keys"),
    ("swapped", [("        return k_all, v_all\n", "        return v_all, k_all\n")],
     "KVCache.insert_kv", "keys and values are swapped"),
    ("no growth", [("        elif needed > self.kv.size(4):", "        elif False:")],
     "KVCache.insert_kv", "outgrows seq_len"),
    ("prefill keys only", [("        self.kv[:, :, :, :, :other.pos] = other.kv[:, :, :, :, :other.pos]",
                            "        self.kv[:, :1, :, :, :other.pos] = other.kv[:, :1, :, :, :other.pos]")],
     "KVCache.prefill", "only the keys"),
    ("prefill keeps position", [("        self.pos = other.pos\n", "")],
     "KVCache.prefill", "leaves the position at 0"),
    ("prefill one row", [("        self.kv[:, :, :, :, :other.pos] = other.kv[:, :, :, :, :other.pos]",
                          "        self.kv[:, :, :1, :, :other.pos] = other.kv[:, :, :, :, :other.pos]")],
     "KVCache.prefill", "first row only"),
    ("get_pos", [("        return self.pos\n", "        return self.seq_len\n")], "KVCache.get_pos",
     "a new cache says it is at position 5"),
    ("temperature multiplies", [("F.softmax(logits / temperature", "F.softmax(logits * temperature")],
     "sample_next_token", "multiplies the logits"),
    ("top-k ignored", [("    if top_k is not None and top_k > 0:", "    if False:")], "sample_next_token",
     "top-k is ignored"),
    ("global rng", [("    return torch.multinomial(probs, 1, generator=rng)",
                     "    return torch.multinomial(probs, 1)")],
     "sample_next_token", "generator=rng"),
    ("first generator for all", [("    if isinstance(rng, (list, tuple)):",
                                  "    if isinstance(rng, (list, tuple)):\n        rng = [rng[0]] * len(rng)")],
     "sample_next_token", "row 1 must draw with rng[1]"),
    ("no calculator", [("            if result is not None:", "            if False:")], "Engine._advance",
     "never queued"),
    ("no markers", [("                row.forced.append(s[\"output_start\"])\n", ""),
                    ("                row.forced.append(s[\"output_end\"])\n", "")],
     "Engine._advance", "without its <|output_start|>"),
    ("one seed", [("            g.manual_seed(seed + i)", "            g.manual_seed(seed)")],
     "Engine.generate", "all 3 rows sample the same tokens"),
    ("never stops", [("            if all(row.done for row in rows) or step == steps - 1:",
                      "            if step == steps - 1:")],
     "Engine.generate", "goes on after every row ended its turn"),
    ("forced masked as sampled", [("token, mask = row.forced.popleft(), 0", "token, mask = row.forced.popleft(), 1")],
     "Engine.generate", "forced tokens have mask 0"),
    ("prefill per row", [("prefill_cache = self._new_cache(1, len(tokens))",
                          "prefill_cache = self._new_cache(num_samples, len(tokens))"),
                         ("ids = torch.tensor([tokens], ", "ids = torch.tensor([tokens] * num_samples, "),
                         ("        logits = logits.expand(num_samples, -1)\n", "")],
     "Engine.generate", "run it once (batch 1)"),
]


@pytest.mark.parametrize("name,edits,qualname,words", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_bug_is_named_at_its_function(tmp_path, name, edits, qualname, words):
    fails = failing(check(planted(tmp_path, edits), reference))
    assert list(fails) == [qualname], fails
    assert words in fails[qualname]


@pytest.mark.parametrize("challenge", CHALLENGES, ids=[c.name for c in CHALLENGES])
def test_each_challenge_fails_where_it_says(tmp_path, challenge):
    fails = failing(check(planted(tmp_path, challenge.edits), reference))
    assert list(fails) == [challenge.method], fails


def test_todos_are_todos_and_the_generator_waits_for_none_of_them(tmp_path):
    todo = '        raise NotImplementedError("TODO: KVCache.insert_kv")\n'
    rows = by_name(check(planted(tmp_path, [("        B, H, T, D = k.shape\n", todo)]), reference))
    assert rows["KVCache.insert_kv"]["status"] == Status.TODO
    assert rows["KVCache.insert_kv"]["line"] is not None
    assert rows["Engine.generate"]["status"] == Status.PASS  # checked with the reference's cache around it


def test_a_crash_is_an_error_with_the_learners_line(tmp_path):
    rows = by_name(check(planted(tmp_path, [("    logits = logits.float()\n", "    logits = logits.flaot()\n")]),
                         reference))
    row = rows["sample_next_token"]
    assert row["status"] == Status.ERROR and "AttributeError" in row["detail"] and row["error_line"]


def test_the_references_own_functions_are_not_the_learners(tmp_path):
    path = tmp_path / "learner_engine.py"
    path.write_text("from nanochat.engine import *\nfrom nanochat.engine import _Row\n", encoding="utf-8")
    result = run_check(str(path), SPEC.files[0], Track.ENGINE)
    assert [r["qualname"] for r in result["components"]] == QUALNAMES
    assert all(r["status"] == Status.MISMATCH and "not" in r["detail"] for r in result["components"])
    assert not result["ok"]


def test_the_track_child_passes_a_verbatim_copy(tmp_path):
    path = tmp_path / "learner_engine.py"
    path.write_text(SOURCE, encoding="utf-8")
    result = run_check(str(path), SPEC.files[0], Track.ENGINE)
    assert result["ok"] and result["track"] == "engine" and result["next_todo"] is None


LESSON = Path(__file__).resolve().parent.parent / "lessons" / "21-kv-cache-and-sampling.md"


def test_lesson_21_teaches_every_exercise_and_its_numbers_are_the_codes():
    text = LESSON.read_text(encoding="utf-8")
    flat = " ".join(text.split())
    assert all(e.lesson == LESSON.name for e in EXERCISES)  # tests/test_lessons.py checks teaches and headings
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    for temperature, top_k in ((1.0, None), (0.5, None), (0.5, 2)):
        kept = logits if top_k is None else logits[:, :top_k]
        probs = torch.softmax(kept / temperature, dim=-1)[0].tolist()
        assert "[" + ", ".join(f"{p:.3f}" for p in probs) + "]" in flat, (temperature, top_k)
        # the sampler draws from exactly these
        draws = reference.sample_next_token(logits.expand(20000, -1), torch.Generator().manual_seed(0),
                                            temperature, top_k)[:, 0]
        seen = torch.bincount(draws, minlength=len(probs))[:len(probs)].double() / 20000
        assert (seen - torch.tensor(probs, dtype=torch.float64)).abs().max() < 0.02
    cache = reference.KVCache(batch_size=1, num_heads=2, seq_len=512, head_dim=128, num_layers=4)
    cache.insert_kv(0, torch.zeros(1, 2, 512, 128), torch.zeros(1, 2, 512, 128))
    assert cache.kv.numel() * cache.kv.element_size() == 4_194_304 == 4 * 2**20
    assert "4,194,304 bytes" in flat and "= 4 MiB" in flat

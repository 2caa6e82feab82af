"""STATUS.md: parsed from the template and from learner-edited files; every write touches only what it means to."""

import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.course.phases import ALL_METHODS, PHASES
from workbench.course.workspace import render_status
from workbench.status.doc import MARK, MILESTONES, StatusDoc, StatusDocError, milestone_key
from workbench.status.rules import apply_check

TEMPLATE = render_status("learner_gpt.py")


def _write(tmp_path, text, name="STATUS.md", newline=""):
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return path


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.split("\n"), after.split("\n")
    assert len(a) == len(b), "line count changed"
    return [(x, y) for x, y in zip(a, b) if x != y]


# -- the template --------------------------------------------------------------------------------------------


def test_template_has_every_phase_with_its_methods_in_order(tmp_path):
    doc = StatusDoc.load(_write(tmp_path, TEMPLATE))
    assert [p.number for p in doc.phases] == [p.number for p in PHASES]
    for parsed, phase in zip(doc.phases, PHASES):
        assert [item.qualname for item in parsed.items] == list(phase.methods)
        assert len(parsed.questions) >= 3, f"phase {phase.number} needs questions to answer"
        assert all(q.id.startswith(f"Q{phase.number}.") and q.text.endswith("?") and not q.answer
                   for q in parsed.questions)
    assert [i.qualname for i in doc.items] == list(ALL_METHODS)
    assert not any(i.ticked for i in doc.items)


def test_template_has_milestones_log_issues_and_comparison_table(tmp_path):
    doc = StatusDoc.load(_write(tmp_path, TEMPLATE))
    assert [m.label for m in doc.milestones] == list(MILESTONES)
    assert not any(m.done for m in doc.milestones)
    assert doc.log == [] and doc.issues == [] and doc.comparison_rows == [] and doc.check_rows == []
    assert "{learner_file}" not in TEMPLATE and "learner_gpt.py" in TEMPLATE
    assert "## Learning log" in TEMPLATE and "## Issues encountered" in TEMPLATE
    assert "| Method | Status | Largest difference | What the check found |" in TEMPLATE
    assert "| Component | Learner | Reference | Compared |" in TEMPLATE


# -- ticks and the regression policy ---------------------------------------------------------------------------


def test_tick_changes_only_the_checkbox_and_adds_the_marker(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    changes = doc.tick({"GPT.__init__", "norm", "not.a.method"})
    assert changes.ticked == {"GPT.__init__", "norm"} and changes.missing == {"not.a.method"}
    assert doc.save() is True
    after = path.read_text(encoding="utf-8")
    changed = _changed_lines(TEMPLATE, after)
    assert len(changed) == 2
    for old, new in changed:
        assert new == old.replace("- [ ]", "- [x]", 1) + " " + MARK
    assert StatusDoc.load(path).ticked() == {"GPT.__init__", "norm"}


def test_untick_clears_workbench_ticks_but_never_the_learners(tmp_path):
    text = TEMPLATE.replace("- [ ] `MLP.forward`", "- [x] `MLP.forward`")  # ticked by hand
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    doc.tick({"Block.forward"})
    doc.save()
    doc = StatusDoc.load(path)
    changes = doc.tick(set(), untick={"Block.forward", "MLP.forward"})
    assert changes.unticked == {"Block.forward"} and changes.kept == {"MLP.forward"}
    doc.save()
    assert path.read_text(encoding="utf-8") == text  # back to exactly what it was


def test_save_without_edits_writes_nothing(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    before = os.stat(path).st_mtime_ns
    doc = StatusDoc.load(path)
    doc.tick({"GPT.__init__"}, untick={"norm"})
    doc.tick(set(), untick={"GPT.__init__"})  # net effect: nothing, but two staged ops
    assert doc.save() is True
    assert path.read_bytes() == TEMPLATE.encode()
    assert StatusDoc.load(path).save() is False
    assert os.stat(path).st_mtime_ns >= before


def test_milestones_by_label_or_key_with_the_same_policy(tmp_path):
    text = TEMPLATE.replace("- [ ] **Full pipeline**", "- [x] **Full pipeline**")
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    changes = doc.set_milestones({"Model builds", "forward_runs", "No such milestone"})
    assert changes.ticked == {"model_builds", "forward_runs"} and changes.missing == {"no_such_milestone"}
    doc.save()
    doc = StatusDoc.load(path)
    assert {m.key for m in doc.milestones if m.done} == {"model_builds", "forward_runs", "full_pipeline"}
    changes = doc.set_milestones(unreached={"forward runs", "full pipeline"})
    assert changes.unticked == {"forward_runs"} and changes.kept == {"full_pipeline"}
    assert milestone_key("Matches  the Reference!") == "matches_the_reference"


# -- the learner's own edits survive --------------------------------------------------------------------------


def test_reworded_items_new_sections_and_moved_items_are_handled(tmp_path):
    text = TEMPLATE.replace(
        "- [ ] `GPT.__init__` — builds wte, the blocks, lm_head and the rotary buffers",
        "* [ ] my constructor, `GPT.__init__` (took me two evenings)",
    ).replace("## Milestones", "## My own notes\n\nThings I noticed.\n\n- [ ] `norm` again, here\n\n## Milestones")
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    assert [i.qualname for i in doc.items].count("norm") == 2
    doc.tick({"GPT.__init__", "norm"})
    doc.save()
    after = path.read_text(encoding="utf-8")
    assert "* [x] my constructor, `GPT.__init__` (took me two evenings) " + MARK in after
    assert "- [x] `norm` again, here " + MARK in after
    assert "## My own notes\n\nThings I noticed.\n" in after
    assert len(_changed_lines(text, after)) == 3


def test_missing_sections_are_skipped_not_fatal(tmp_path):
    text = "# My status\n\n- [ ] `GPT.forward` the forward pass\n\nfree text\n"
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    assert [i.qualname for i in doc.items] == ["GPT.forward"] and doc.items[0].phase == 3
    assert doc.milestones == [] and doc.questions == [] and doc.log == [] and doc.phases == []
    assert doc.set_milestones({"Model builds"}).missing == {"model_builds"}
    with pytest.raises(KeyError, match="no question"):
        doc.add_answer("Q1.1", "something")
    doc.add_log_entry("first day", when="2025-01-02 10:00")
    doc.update_comparison_table([("norm", "ok", "ok", "pass")])
    doc.save()
    after = path.read_text(encoding="utf-8")
    assert after.startswith(text)  # everything the learner had is still there, unchanged
    assert "## Learning log\n\n- **2025-01-02 10:00** — first day\n" in after
    assert "| Component | Learner | Reference | Compared |\n|---|---|---|---|\n| norm | ok | ok | pass |\n" in after
    assert StatusDoc.load(path).log[0].text == "first day"


def test_checkboxes_inside_code_fences_are_not_items(tmp_path):
    text = TEMPLATE + "\n```markdown\n- [ ] `norm` an example, not an item\n```\n"
    doc = StatusDoc.load(_write(tmp_path, text))
    assert [i.qualname for i in doc.items].count("norm") == 1


# -- answers, log entries, the comparison table ----------------------------------------------------------------


def test_answers_land_under_their_question(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    doc.add_answer("Q3.2", "It would copy the next token.\nLoss would drop to near zero.")
    doc.add_answer("q3.2", "(second thought) and generation would be garbage.")
    doc.add_answer("What range can they take", "(-15, 15)")  # a unique part of Q3.4's text
    doc.save()
    lines = path.read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("- **Q3.2**"))
    nxt = next(i for i, line in enumerate(lines) if line.startswith("- **Q3.3**"))
    assert lines[start + 2:nxt] == [
        "  > It would copy the next token.", "  > Loss would drop to near zero.", "  >",
        "  > (second thought) and generation would be garbage.",
    ]
    doc = StatusDoc.load(path)
    answers = {q.id: q.answer for q in doc.questions}
    assert answers["Q3.2"] == ("It would copy the next token.\nLoss would drop to near zero.\n\n"
                               "(second thought) and generation would be garbage.")
    assert answers["Q3.4"] == "(-15, 15)"
    assert sum(bool(a) for a in answers.values()) == 2


def test_a_learner_written_answer_is_read_and_extended(tmp_path):
    text = TEMPLATE.replace(
        "- **Q5.3** Why does the same seed give the same text, and when would you not want that?\n",
        "- **Q5.3** Why does the same seed give the same text, and when would you not want that?\n"
        "  The generator is seeded.\n\n  A chat app wants variety.\n")
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    q = next(q for q in doc.questions if q.id == "Q5.3")
    assert q.answer == "The generator is seeded.\n\nA chat app wants variety."
    doc.add_answer("Q5.3", "Also: tests.")
    doc.save()
    assert "  A chat app wants variety.\n  > Also: tests.\n" in path.read_text(encoding="utf-8")


def test_unknown_or_ambiguous_question_is_an_error_and_changes_nothing(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    with pytest.raises(KeyError, match="Q1.1"):
        doc.add_answer("Q9.9", "x")
    with pytest.raises(KeyError, match="several"):
        doc.add_answer("Why", "x")
    with pytest.raises(ValueError):
        doc.add_answer("Q1.1", "   ")
    assert doc.save() is False and path.read_text(encoding="utf-8") == TEMPLATE


def test_log_and_issue_entries_append_in_order_inside_their_sections(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    doc.add_log_entry("built the config", when="2025-03-01 09:00")
    doc.add_log_entry("rotary finally clicked\nthe pairs are halves, not neighbours", when="2025-03-02 21:15")
    doc.add_issue("forgot to square the relu", when="2025-03-02 22:00")
    doc.save()
    text = path.read_text(encoding="utf-8")
    log = text[text.index("## Learning log"):text.index("## Issues encountered")]
    assert log.endswith("- **2025-03-01 09:00** — built the config\n"
                        "- **2025-03-02 21:15** — rotary finally clicked\n"
                        "  the pairs are halves, not neighbours\n\n")
    assert text.endswith("start.\n\n- **2025-03-02 22:00** — forgot to square the relu\n")
    doc = StatusDoc.load(path)
    assert [(e.when, e.text) for e in doc.log] == [("2025-03-01 09:00", "built the config"),
                                                   ("2025-03-02 21:15", "rotary finally clicked")]
    assert [e.text for e in doc.issues] == ["forgot to square the relu"]


def test_comparison_table_upserts_rows_and_keeps_the_learners(tmp_path):
    text = TEMPLATE.replace("|---|---|---|---|\n", "|---|---|---|---|\n| my idea | a | b | c |\n")
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    doc.update_comparison_table([("`norm`", "max |Δ| 1e-7", "", "pass"),
                                 {"component": "`GPT.forward`", "learner": "loss 8.3", "reference": "loss 8.3",
                                  "status": "pass"}])
    doc.save()
    doc = StatusDoc.load(path)
    doc.update_comparison_table([("`norm`", "max |Δ| 0.8", "", "mismatch")])
    doc.save()
    rows = StatusDoc.load(path).comparison_rows
    assert rows == [["my idea", "a", "b", "c"], ["`norm`", "max |Δ| 0.8", "", "mismatch"],
                    ["`GPT.forward`", "loss 8.3", "loss 8.3", "pass"]]
    assert "| `norm` | max \\|Δ\\| 0.8 |  | mismatch |" in path.read_text(encoding="utf-8")


# -- concurrency and atomicity -----------------------------------------------------------------------------


def test_an_edit_saved_between_load_and_save_is_kept(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    doc.add_answer("Q1.2", "they are derived, not learned")
    # the learner saves in their editor meanwhile: a new line at the top and an answer of their own
    edited = TEMPLATE.replace("# Building my GPT: status\n", "# Building my GPT: status\n\nDay 3. Going well.\n")
    edited = edited.replace("checkpoints?\n", "checkpoints?\n  My own answer first.\n")
    path.write_text(edited, encoding="utf-8")
    doc.save()
    after = path.read_text(encoding="utf-8")
    assert "Day 3. Going well." in after
    assert "checkpoints?\n  My own answer first.\n  > they are derived, not learned\n" in after
    changed = _changed_lines(edited, after.replace("  > they are derived, not learned\n", ""))
    assert changed == [("- [ ] `norm` — scales each vector to unit root-mean-square, with nothing to learn",
                        "- [x] `norm` — scales each vector to unit root-mean-square, with nothing to learn " + MARK)]


def test_an_edit_saved_while_the_temp_file_is_written_is_kept(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    doc.tick({"GPT.forward"})
    calls = []

    def learner_saves_now(tmp):
        calls.append(tmp)
        assert os.path.dirname(tmp) == str(tmp_path)  # the temp file sits next to STATUS.md
        if len(calls) == 1:
            path.write_text(path.read_text(encoding="utf-8") + "\nA line I typed just now.\n", encoding="utf-8")

    doc._before_replace = learner_saves_now
    doc.save()
    after = path.read_text(encoding="utf-8")
    assert len(calls) == 2  # the first attempt was thrown away and redone on the new text
    assert after.endswith("\nA line I typed just now.\n")
    assert "- [x] `GPT.forward`" in after
    assert sorted(os.listdir(tmp_path)) == [".STATUS.md.bak", "STATUS.md"], "temp files left behind"
    assert (tmp_path / ".STATUS.md.bak").read_text(encoding="utf-8").endswith("\nA line I typed just now.\n")


def test_mode_is_preserved_and_symlinks_are_followed(tmp_path):
    real = _write(tmp_path, TEMPLATE, name="real-status.md")
    os.chmod(real, 0o640)
    link = tmp_path / "STATUS.md"
    link.symlink_to(real.name)
    doc = StatusDoc.load(link)
    doc.tick({"norm"})
    doc.save()
    assert link.is_symlink()
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640
    assert "- [x] `norm`" in real.read_text(encoding="utf-8")


def test_a_deleted_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(StatusDocError, match="does not exist"):
        StatusDoc.load(tmp_path / "STATUS.md")
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    path.unlink()
    with pytest.raises(StatusDocError, match="does not exist"):
        doc.save()
    assert not path.exists()


# -- bytes: line endings, no final newline, odd bytes ------------------------------------------------------------


def test_crlf_files_stay_crlf(tmp_path):
    crlf = TEMPLATE.replace("\n", "\r\n")
    path = _write(tmp_path, crlf)
    doc = StatusDoc.load(path)
    doc.tick({"norm", "GPT.generate"})
    doc.set_milestones({"Model builds"})
    doc.add_answer("Q2.1", "nothing at all\nso gradients flow")
    doc.add_log_entry("crlf day", when="2025-01-01 00:00")
    doc.update_comparison_table([("norm", "a", "b", "pass")])
    doc.save()
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n") > crlf.count("\r\n")
    assert StatusDoc.load(path).ticked() == {"norm", "GPT.generate"}


def test_no_final_newline_and_undecodable_bytes_survive(tmp_path):
    raw = TEMPLATE.encode().rstrip(b"\n") + b"\n\nnotes in latin-1: caf\xe9"
    path = tmp_path / "STATUS.md"
    path.write_bytes(raw)
    doc = StatusDoc.load(path)
    doc.tick({"norm"})
    doc.save()
    after = path.read_bytes()
    assert after.endswith(b"caf\xe9")
    item = "`norm` — scales each vector to unit root-mean-square, with nothing to learn".encode()
    assert after == raw.replace(b"- [ ] " + item, b"- [x] " + item + b" " + MARK.encode())


_safe_line = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n`#[|"),
                     max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(insertions=st.lists(st.tuples(st.integers(min_value=0, max_value=200), _safe_line), max_size=8),
       to_tick=st.sets(st.sampled_from(ALL_METHODS)))
def test_property_ticks_touch_only_item_lines_whatever_else_the_learner_wrote(tmp_path, insertions, to_tick):
    lines = TEMPLATE.split("\n")
    for pos, text in insertions:
        lines.insert(min(pos, len(lines) - 1), text)
    text = "\n".join(lines)
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    doc.tick(to_tick)
    doc.save()
    after = path.read_text(encoding="utf-8")
    changed = _changed_lines(text, after)
    assert len(changed) == len(to_tick)
    for old, new in changed:
        assert new == old.replace("[ ]", "[x]", 1) + " " + MARK
    assert StatusDoc.load(path).ticked() == to_tick


# -- one check report -> ticks, milestones, table -----------------------------------------------------------------


def _report(stage, statuses, ok=False, losses=()):
    return {"ok": ok, "stage": stage, "losses": list(losses),
            "components": [{"qualname": q, "phase": 1, "status": s, "detail": f"{q} {s}", "max_abs_diff": None}
                           for q, s in statuses.items()]}


def test_apply_check_skeleton_then_complete_then_regression(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    apply_check(doc, _report("construct", {q: "todo" for q in ALL_METHODS}))
    doc.save()
    doc = StatusDoc.load(path)
    assert doc.ticked() == set() and not any(m.done for m in doc.milestones)

    apply_check(doc, _report("done", {q: "pass" for q in ALL_METHODS}, ok=True, losses=[8.3, 7.9, 7.1]))
    doc.save()
    doc = StatusDoc.load(path)
    assert doc.ticked() == set(ALL_METHODS)
    assert {m.key for m in doc.milestones if m.done} == {milestone_key(m) for m in MILESTONES} - {"full_pipeline"}
    assert len(doc.check_rows) == len(ALL_METHODS) and doc.comparison_rows == []

    # a syntax error while typing changes nothing
    assert apply_check(doc, {"ok": False, "stage": "import", "components": []}).ticked == set()

    # MLP.forward regresses: its tick and the milestones after the forward pass go, the rest stays
    statuses = {q: "pass" for q in ALL_METHODS}
    statuses.update({"MLP.forward": "mismatch", "Block.forward": "skipped"})
    changes = apply_check(doc, _report("done", statuses, ok=False, losses=[8.3, 8.1]))
    doc.save()
    doc = StatusDoc.load(path)
    assert "MLP.forward" in changes.unticked
    assert doc.ticked() == set(ALL_METHODS) - {"MLP.forward"}
    assert {m.key for m in doc.milestones if not m.done} == {"matches_reference", "full_pipeline"}
    row = next(r for r in doc.check_rows if r[0] == "`MLP.forward`")
    assert row[1:] == ["mismatch", "", "MLP.forward mismatch"]


def test_nested_bullets_in_an_answer_or_a_log_entry_are_not_new_questions_or_entries(tmp_path):
    text = TEMPLATE.replace(
        "- **Q4.3** Where does the 6 in \"6 FLOPs per parameter per token\" come from?\n",
        "- **Q4.3** Where does the 6 in \"6 FLOPs per parameter per token\" come from?\n"
        "  - 2 for the forward pass\n  - 4 for the backward pass\n")
    path = _write(tmp_path, text)
    doc = StatusDoc.load(path)
    doc.add_log_entry("day one\n- nested note", when="2025-01-01 08:00")
    doc.save()
    doc = StatusDoc.load(path)
    q = next(q for q in doc.questions if q.id == "Q4.3")
    assert q.answer == "- 2 for the forward pass\n- 4 for the backward pass"
    assert len([q for q in doc.questions if q.phase == 4]) == 3
    assert [e.text for e in doc.log] == ["day one"]


def test_an_answer_whose_question_was_deleted_meanwhile_is_a_clear_error(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc = StatusDoc.load(path)
    doc.add_answer("Q5.1", "greedy")
    edited = "\n".join(line for line in TEMPLATE.split("\n") if "**Q5.1**" not in line)
    path.write_text(edited, encoding="utf-8")
    with pytest.raises(StatusDocError, match="no longer fits"):
        doc.save()
    assert path.read_text(encoding="utf-8") == edited

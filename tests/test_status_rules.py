"""What one check result does to STATUS.md: the method-checks table says what its columns hold (issue 10, item
16), an experiment keeps its box (issue 19), a track file's result reaches none of the GPT's stage milestones."""

from workbench.check.result import Status
from workbench.course.phases import ALL_METHODS
from workbench.course.workspace import render_status
from workbench.status.doc import MARK, StatusDoc
from workbench.status.rules import apply_check

TEMPLATE = render_status("learner_gpt.py")
CHECK_HEADER = "| Method | Status | Largest difference | What the check found |"


def _write(tmp_path, text):
    path = tmp_path / "STATUS.md"
    path.write_text(text, encoding="utf-8")
    return path


def _result(statuses: dict, stage="done", ok=False, **extra) -> dict:
    comps = [{"qualname": q, "status": s, "detail": f"{q}: {s} detail", "max_abs_diff": 1.45 if s == "mismatch"
              else 3e-7 if s == "pass" else None} for q, s in statuses.items()]
    return {"ok": ok, "stage": stage, "losses": [8.3, 8.0], "components": comps, **extra}


def _apply(path, result):
    doc = StatusDoc.load(path)
    changes = apply_check(doc, result)
    doc.save()
    return StatusDoc.load(path), changes


def _table(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_the_check_table_header_says_what_each_column_holds_and_the_rows_fit_it(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    doc, _ = _apply(path, _result({"norm": "pass", "MLP.forward": "mismatch", "GPT.generate": "todo"}))
    table = _table(doc.text, CHECK_HEADER)
    assert table[1] == "|---|---|---|---|"
    assert table[2:] == ["| `norm` | pass | 3e-07 | norm: pass detail |",
                         "| `MLP.forward` | mismatch | 1.4 | MLP.forward: mismatch detail |",
                         "| `GPT.generate` | todo |  | GPT.generate: todo detail |"]
    for row in doc.check_rows:  # every row fits its header: a method, a status word, a number or nothing
        assert row[0].strip("`") in ALL_METHODS and row[1] in {s.value for s in Status}
        assert row[2] == "" or float(row[2]) >= 0
    # the table sits in a section of its own, before the learner-vs-reference table (which keeps its own rows)
    assert doc.text.index("## Method checks") < doc.text.index("## Learner vs reference")
    assert doc.comparison_rows == []
    # a second check updates the rows in place
    doc, _ = _apply(path, _result({"MLP.forward": "pass"}))
    assert _table(doc.text, CHECK_HEADER)[3] == "| `MLP.forward` | pass | 3e-07 | MLP.forward: pass detail |"
    assert doc.text.count(CHECK_HEADER) == 1


def _old_template() -> str:
    """The template as it was before the check's rows had a table of their own."""
    text = TEMPLATE
    if "## Method checks" in text:
        text = text[:text.index("## Method checks")] + text[text.index("## Learner vs reference"):]
    return text.replace("| Component | Learner | Reference | Compared |",
                        "| Component | Learner | Reference | Status |")


def test_method_rows_written_by_an_older_version_move_out_of_the_learner_vs_reference_table(tmp_path):
    old = _old_template().replace("|---|---|---|---|\n", "|---|---|---|---|\n"
                           "| `norm` | norm: pass detail | max \\|Δ\\| 3e-07 | pass |\n"
                           "| my idea | a | b | c |\n"
                           "| Training loss (compare) | 3.1 at step 50 | 3.0 at step 50 | +3.33% vs the reference |\n")
    path = _write(tmp_path, old)
    doc, _ = _apply(path, _result({"MLP.forward": "mismatch"}))
    assert doc.comparison_rows == [["my idea", "a", "b", "c"],
                                   ["Training loss (compare)", "3.1 at step 50", "3.0 at step 50",
                                    "+3.33% vs the reference"]]
    assert [r[0] for r in doc.check_rows] == ["`MLP.forward`"]
    assert "| Component | Learner | Reference | Compared |" in doc.text, "the compare table's last column is named"
    assert "max \\|Δ\\|" not in doc.text
    assert doc.text.index("## Method checks") < doc.text.index("## Learner vs reference"), "made where it belongs"


def test_an_experiment_keeps_its_box_as_it_is_and_counts_as_matching(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    everything = {q: "pass" for q in ALL_METHODS}
    doc, _ = _apply(path, _result(everything, ok=True))
    assert "MLP.forward" in doc.ticked()
    # the learner turns MLP.forward into an experiment (GELU): the box stays ticked, the reference still matched
    doc, changes = _apply(path, _result({**everything, "MLP.forward": "experiment"}, ok=True))
    assert "MLP.forward" in doc.ticked() and "MLP.forward" not in changes.unticked
    assert next(m for m in doc.milestones if m.key == "matches_reference").done
    row = next(r for r in doc.check_rows if r[0] == "`MLP.forward`")
    assert row[1] == "experiment"
    # an experiment is not ticked newly either: it is not the reference's method
    fresh = _write(tmp_path, TEMPLATE)
    doc, changes = _apply(fresh, _result({"MLP.forward": "experiment", "norm": "pass"}))
    assert "MLP.forward" not in doc.ticked() and "norm" in doc.ticked()
    # a model that differs on purpose does not newly claim to match the reference
    fresh = _write(tmp_path, TEMPLATE)
    doc, _ = _apply(fresh, _result({**everything, "MLP.forward": "experiment"}, ok=True))
    assert not next(m for m in doc.milestones if m.key == "matches_reference").done


def test_a_track_result_ticks_its_components_but_no_stage_milestone(tmp_path):
    text = TEMPLATE + "\n## Phase 6: Optimizer\n\n- [ ] `norm` stands in for a track exercise here\n"
    path = _write(tmp_path, text)
    result = _result({"norm": "pass"}, ok=True, track="optimizer")
    doc, changes = _apply(path, result)
    assert not any(m.done for m in doc.milestones), "a track file builds no GPT"
    assert "norm" in changes.ticked
    assert MARK in next(line for line in doc.text.splitlines() if "stands in for a track exercise" in line)

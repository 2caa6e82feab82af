"""Answers typed in the lessons' notes pane land under the question they answer in STATUS.md (issue 10, item 16),
free notes in a subsection per lesson; nothing the learner wrote is lost."""

import difflib

import pytest

from workbench.course.workspace import init_workspace
from workbench.status.doc import StatusDoc, backup_path
from workbench.status.notes import read_notes, write_notes


@pytest.fixture
def workspace(tmp_path):
    return init_workspace(tmp_path / "ws")


def _save(path, lesson, title, answers, notes=""):
    doc = StatusDoc.load(path)
    write_notes(doc, lesson, title, answers, notes)
    doc.save()
    return StatusDoc.load(path)


def test_an_answer_goes_under_a_numbered_question_of_the_phase_that_lists_the_lesson(workspace):
    before = workspace.status_file.read_text(encoding="utf-8")
    doc = _save(workspace.status_file, "07-attention.md", "Attention",
                [("Why are the scores divided by √head_dim before the softmax?", "so the softmax starts soft"),
                 ("What bounds the attention scores?", "")])
    after = doc.text
    q = next(q for q in doc.questions if "√head_dim" in q.text)
    assert (q.id, q.phase, q.answer) == ("Q1.5", 1, "so the softmax starts soft")
    assert ("- **Q1.4** There is no table of position embeddings anywhere in the model. Where does it learn about "
            "order?\n- **Q1.5** (lesson 07) Why are the scores divided by √head_dim before the softmax?\n"
            "  > so the softmax starts soft\n\n## Phase 2") in after
    assert "What bounds" not in after, "an unanswered question is not added"
    assert "## Lesson notes" not in after, "no notes section without free notes"
    edits = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines()).get_opcodes()
    assert {op for op, *_ in edits} == {"equal", "insert"}
    assert read_notes(doc, "07-attention.md") == ({"Why are the scores divided by √head_dim before the softmax?":
                                                   "so the softmax starts soft"}, "")


def test_editing_the_answer_replaces_it_and_the_next_question_of_the_phase_gets_the_next_id(workspace):
    path = workspace.status_file
    _save(path, "05-rmsnorm.md", "RMSNorm", [("Why is there no mean subtraction?", "cheaper")])
    doc = _save(path, "05-rmsnorm.md", "RMSNorm", [("Why is there no mean subtraction?", "cheaper\n\nand it works"),
                                                    ("What does eps guard against?", "dividing by zero")])
    assert doc.text.count("cheaper") == 1
    assert ("- **Q3.6** (lesson 05) Why is there no mean subtraction?\n  > cheaper\n  >\n  > and it works\n"
            "- **Q3.7** (lesson 05) What does eps guard against?\n  > dividing by zero\n") in doc.text
    answers, _ = read_notes(doc, "05-rmsnorm.md")
    assert answers == {"Why is there no mean subtraction?": "cheaper\n\nand it works",
                       "What does eps guard against?": "dividing by zero"}
    # clearing the answer in the pane clears it in the file; the question stays for later
    doc = _save(path, "05-rmsnorm.md", "RMSNorm", [("Why is there no mean subtraction?", "")])
    assert "- **Q3.6** (lesson 05) Why is there no mean subtraction?\n- **Q3.7**" in doc.text


def test_an_answer_the_learner_wrote_in_the_file_is_what_the_pane_shows_and_keeps(workspace):
    path = workspace.status_file
    _save(path, "07-attention.md", "Attention", [("Why mask?", "first")])
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  > first\n", "  > first, and more I typed in my editor\n  - a nested point\n"),
                    encoding="utf-8")
    answers, _ = read_notes(StatusDoc.load(path), "07-attention.md")
    assert answers == {"Why mask?": "first, and more I typed in my editor\n- a nested point"}
    # the pane saves another lesson's notes: this answer is unchanged, so its lines are not rewritten
    doc = _save(path, "07-attention.md", "Attention", [("Why mask?", answers["Why mask?"])], "free")
    assert "  > first, and more I typed in my editor\n  - a nested point\n" in doc.text


def test_a_lesson_no_phase_lists_gets_a_questions_section_and_free_notes_a_subsection(workspace):
    doc = _save(workspace.status_file, "02-tokenization.md", "Tokenization", [("Why BPE?", "bytes, then merges")],
                "try vocab 512")
    assert "\n## Questions from the lessons\n\n- (lesson 02) Why BPE?\n  > bytes, then merges\n" in doc.text
    assert "### Lesson 02\n\n*02-tokenization.md — Tokenization*\n\n> try vocab 512\n" in doc.text
    q = next(q for q in doc.questions if "Why BPE" in q.text)
    assert q.id is None and q.answer == "bytes, then merges"
    assert read_notes(doc, "02-tokenization.md") == ({"Why BPE?": "bytes, then merges"}, "try vocab 512")
    assert len(doc.items) == 17 and [p.number for p in doc.phases] == [1, 2, 3, 4, 5]


def test_answers_in_the_old_lesson_notes_section_move_under_their_questions(workspace):
    old = workspace.status_file.read_text(encoding="utf-8") + (
        "\n## Lesson notes\n\nintro\n\n### Lesson 07\n\n*07-attention.md — Attention*\n\n"
        "**Q: Why mask?**\n\n> the future\n\n**Notes**\n\n> mask = tril\n")
    workspace.status_file.write_text(old, encoding="utf-8")
    answers, notes = read_notes(StatusDoc.load(workspace.status_file), "07-attention.md")
    assert (answers, notes) == ({"Why mask?": "the future"}, "mask = tril")
    doc = _save(workspace.status_file, "07-attention.md", "Attention", list(answers.items()), notes)
    assert "**Q: Why mask?**" not in doc.text and doc.text.count("the future") == 1
    assert "- **Q1.5** (lesson 07) Why mask?\n  > the future\n" in doc.text
    assert read_notes(doc, "07-attention.md") == ({"Why mask?": "the future"}, "mask = tril")


def test_a_save_the_learner_makes_meanwhile_is_merged_and_their_version_kept(workspace):
    path = workspace.status_file
    doc = StatusDoc.load(path)
    write_notes(doc, "07-attention.md", "Attention", [("Why mask?", "the future")], "")
    # the learner answers Q1.1 in their editor before the workbench writes
    mine = path.read_text(encoding="utf-8").replace("if `n_kv_head` were 1?\n", "if `n_kv_head` were 1?\n  > 128\n")
    path.write_text(mine, encoding="utf-8")
    doc.save()
    doc = StatusDoc.load(path)
    assert next(q for q in doc.questions if q.id == "Q1.1").answer == "128"
    assert next(q for q in doc.questions if q.id == "Q1.5").answer == "the future"
    assert open(backup_path(path), encoding="utf-8").read() == mine

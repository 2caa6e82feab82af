"""The issue log: an error filed from the TUI lands as a dated entry in STATUS.md, with lines left for the learner."""

import os
import stat

import pytest

from workbench.course.workspace import init_workspace
from workbench.status.doc import StatusDoc, backup_path
from workbench.status.issue_log import add_issue_entry


@pytest.fixture
def workspace(tmp_path):
    return init_workspace(tmp_path / "ws")


def test_an_error_is_filed_under_the_templates_issues_section_with_blank_solution_lines(workspace):
    before = workspace.status_file.read_text(encoding="utf-8")
    assert add_issue_entry(workspace.directory, "MLP.forward does not match",
                           "MLP.forward: looks like relu instead of relu² — max |Δ| 1.45",
                           when="2026-03-02 21:15") is None
    after = workspace.status_file.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip("\n")), "only the entry is added"
    assert after.endswith("- **2026-03-02 21:15** — MLP.forward does not match\n"
                          "  Error: `MLP.forward: looks like relu instead of relu² — max |Δ| 1.45`\n"
                          "  Solution:\n  Lesson learned:\n")
    doc = StatusDoc.load(workspace.status_file)
    assert [(e.when, e.text) for e in doc.issues] == [("2026-03-02 21:15", "MLP.forward does not match")]
    assert doc.log == [], "the learning log is not the issue log"


def test_a_traceback_goes_in_a_fence_and_later_entries_follow_the_learners_solution(workspace):
    add_issue_entry(workspace.status_file, "crash in forward",
                    "Traceback (most recent call last):\n  File \"learner_gpt.py\", line 9\n"
                    "    y = ```x```\nZeroDivisionError: division by zero", when="2026-03-01 09:00")
    text = workspace.status_file.read_text(encoding="utf-8")
    assert "  Error:\n  ````\n  Traceback (most recent call last):\n" in text  # longer than the ``` inside
    assert "  ZeroDivisionError: division by zero\n  ````\n  Solution:\n" in text
    # the learner writes their solution; the next entry goes after it, and their words stay
    workspace.status_file.write_text(text.replace("  Solution:\n", "  Solution: divide by n, not 0\n"),
                                     encoding="utf-8")
    add_issue_entry(workspace.directory, "second", "boom", when="2026-03-01 10:00")
    doc = StatusDoc.load(workspace.status_file)
    assert "  Solution: divide by n, not 0\n" in doc.text
    assert [e.text for e in doc.issues] == ["crash in forward", "second"]
    assert os.path.exists(backup_path(workspace.status_file)), "the learner's version before the write is kept"


def test_without_an_issues_section_an_issue_log_is_created_and_the_learning_log_stays_apart(tmp_path):
    path = tmp_path / "STATUS.md"
    path.write_text("# My notes\n\n## Learning log\n\n- **2026-01-01 08:00** — day one\n", encoding="utf-8")
    assert add_issue_entry(tmp_path, "import fails", "SyntaxError: invalid syntax", when="2026-01-02 08:00") is None
    doc = StatusDoc.load(path)
    assert "\n## Issue log\n\n- **2026-01-02 08:00** — import fails\n" in doc.text
    assert [e.text for e in doc.log] == ["day one"]
    assert [e.text for e in doc.issues] == ["import fails"]
    doc.add_log_entry("day two", when="2026-01-03 08:00")  # the learning log stays the learning log
    doc.save()
    assert [e.text for e in StatusDoc.load(path).log] == ["day one", "day two"]


def test_a_read_only_or_missing_status_md_gets_one_line_and_an_empty_problem_is_refused(tmp_path, workspace):
    assert "does not exist" in add_issue_entry(tmp_path / "nowhere", "p", "e")
    os.chmod(workspace.status_file, stat.S_IRUSR)
    before = workspace.status_file.read_text(encoding="utf-8")
    message = add_issue_entry(workspace.directory, "p", "e")
    assert "read-only" in message and "\n" not in message
    assert workspace.status_file.read_text(encoding="utf-8") == before
    with pytest.raises(ValueError):
        add_issue_entry(workspace.directory, "  ", "e")

"""The lessons screen: lessons listed from the lessons folder, opened at the section of a method, searched, and
the notes typed beside them saved into STATUS.md (and shown again on the next start)."""

import asyncio
import difflib

import pytest

from workbench.course.lessons import heading_for, list_lessons
from workbench.course.workspace import init_workspace
from workbench.status.doc import StatusDoc
from workbench.status.notes import read_notes, write_notes
from workbench.tui.app import WorkbenchApp

pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"

FILLER = "\n\n".join(f"Paragraph {i}: queries meet keys, and values are mixed by the weights." for i in range(50))
ATTENTION = f"""---
title: Attention
teaches: [CausalSelfAttention.__init__, CausalSelfAttention.forward]
minutes: 20
questions:
  - q: Why are the scores divided by sqrt(D)?
    a: So the softmax does not saturate as D grows.
  - q: What does the causal mask stop?
    a: A position reading the future.
---

# Attention

{FILLER}

## `CausalSelfAttention.__init__`

The four projections.

## `CausalSelfAttention.forward`

The forward pass ends in a softmax over the keys each query may see.
"""
RMSNORM = """---
title: RMSNorm
teaches: [norm]
questions:
  - q: Why is there no mean subtraction?
---

# RMSNorm

## `norm`

Scale every vector to unit root-mean-square.

```python
def norm(x):
    return F.rms_norm(x, (x.size(-1),))  # no learnable gain: the reference keeps RMSNorm parameter-free, END_OF_LINE
```
"""
BROKEN = """---
title: [unclosed
---

# Broken front matter
"""


@pytest.fixture
def lessons(tmp_path, monkeypatch):
    folder = tmp_path / "lessons"
    folder.mkdir()
    (folder / "05-rmsnorm.md").write_text(RMSNORM)
    (folder / "07-attention.md").write_text(ATTENTION)
    (folder / "99-broken.md").write_text(BROKEN)
    monkeypatch.setenv("NANOCHAT_LESSONS_DIR", str(folder))
    return folder


@pytest.fixture
def workspace(tmp_path):
    return init_workspace(tmp_path / "ws")


async def until(pilot, condition, timeout=10.0):
    """Let the app run until `condition()` holds (fails the test after `timeout` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


async def wait_group(node, group):
    """Wait for the node's workers of one group (never for all: the file watcher runs until the app exits)."""
    workers = [w for w in node.workers if w.group == group]
    if workers:
        await node.app.workers.wait_for_complete(workers)


async def open_lesson(app, pilot, lesson, qualname=None):
    app.lesson_request = (lesson, qualname)
    if app.current_mode != "lessons":
        await pilot.press("2")
    screen = app.screen
    await until(pilot, lambda: screen.current is not None and screen.current.name == lesson)
    await wait_group(screen, "lesson-load")
    await pilot.pause(0.1)
    return screen


def test_lessons_are_read_with_front_matter_and_a_broken_one_is_still_listed(lessons):
    found = {lesson.name: lesson for lesson in list_lessons()}
    assert set(found) == {"05-rmsnorm.md", "07-attention.md", "99-broken.md"}
    assert found["07-attention.md"].teaches == ["CausalSelfAttention.__init__", "CausalSelfAttention.forward"]
    assert found["07-attention.md"].questions[0]["q"].startswith("Why are the scores")
    assert found["99-broken.md"].problem and "front matter" in found["99-broken.md"].problem
    toc = [(2, "CausalSelfAttention.__init__", "a"), (2, "CausalSelfAttention.forward", "b"), (2, "norm", "c")]
    assert heading_for(toc, "CausalSelfAttention.forward") == "b"
    assert heading_for(toc, "GPT.forward") is None


async def test_opening_a_lesson_at_a_method_scrolls_to_its_section(lessons, workspace):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_lesson(app, pilot, "07-attention.md", "CausalSelfAttention.forward")
        viewer = screen.query_one("#lesson-viewer")
        heading = next(h for h in viewer.document.query("MarkdownH2") if "forward" in h._content.plain)
        # the heading, far below the start (after 50 paragraphs), is scrolled into view
        await until(pilot, lambda: viewer.scroll_y > 0 and viewer.region.contains_region(heading.region))
        assert screen.query_one("#lesson-list").highlighted == 1


async def test_search_highlights_and_scrolls_to_matches(lessons, workspace):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_lesson(app, pilot, "07-attention.md")
        viewer = screen.query_one("#lesson-viewer")
        assert viewer.scroll_y == 0
        await pilot.press("slash")
        await pilot.press(*"softmax", "enter")
        await until(pilot, lambda: viewer.scroll_y > 0)
        hits = list(viewer.document.query(".-search-hit"))
        assert len(hits) == 1 and "softmax" in hits[0]._content.plain
        await pilot.press("escape")
        assert not list(viewer.document.query(".-search-hit"))


async def test_notes_typed_in_a_lesson_are_in_status_md_after_quit_and_come_back(lessons, workspace):
    before = workspace.status_file.read_text()
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_lesson(app, pilot, "07-attention.md")
        await pilot.press("n")  # focus the first answer box
        await pilot.press(*"keeps the softmax soft")
        await pilot.click("#free-notes")
        await pilot.press(*"mask = tril")
        await pilot.press("ctrl+q")  # quits before the debounce fires: the notes must be flushed on quit
    after = workspace.status_file.read_text()
    edits = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines()).get_opcodes()
    assert {op for op, *_ in edits} == {"equal", "insert"}, "the rest of STATUS.md must be left as it was"
    assert "- **Q1.5** (lesson 07) Why are the scores divided by sqrt(D)?\n  > keeps the softmax soft\n" in after, \
        "the answer goes under its question, with the questions of the phase that lists the lesson"
    answers, notes = read_notes(StatusDoc.load(workspace.status_file), "07-attention.md")
    assert answers["Why are the scores divided by sqrt(D)?"] == "keeps the softmax soft"
    assert notes == "mask = tril"

    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_lesson(app, pilot, "07-attention.md")
        assert screen.query_one("#answer-0").text == "keeps the softmax soft"
        assert screen.query_one("#free-notes").text == "mask = tril"


async def test_notes_are_saved_while_typing_debounced(lessons, workspace):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_lesson(app, pilot, "05-rmsnorm.md")
        await pilot.press("n")
        await pilot.press(*"it is cheaper")
        await until(pilot, lambda: "it is cheaper" in workspace.status_file.read_text())
        await wait_group(app, "notes-write")
        await pilot.press(*" and works")
        await until(pilot, lambda: "it is cheaper and works" in workspace.status_file.read_text())
    text = workspace.status_file.read_text()
    assert text.count("it is cheaper") == 1, "an edit replaces, never appends"
    assert "(lesson 05) Why is there no mean subtraction?\n  > it is cheaper and works\n" in text


def test_note_writes_replace_one_subsection_and_keep_a_concurrent_edit(workspace):
    doc = StatusDoc.load(workspace.status_file)
    write_notes(doc, "07-attention.md", "Attention", [("Why?", "first answer")], "")
    doc.save()
    doc = StatusDoc.load(workspace.status_file)
    write_notes(doc, "05-rmsnorm.md", "RMSNorm", [("Mean?", "no mean")], "two\nlines")
    # the learner saves an edit of their own before the workbench writes
    edited = workspace.status_file.read_text().replace("## Learning log", "## Learning log\n\n- my own entry")
    workspace.status_file.write_text(edited)
    doc.save()
    doc = StatusDoc.load(workspace.status_file)
    assert "- my own entry" in doc.text
    assert read_notes(doc, "07-attention.md") == ({"Why?": "first answer"}, "")
    assert read_notes(doc, "05-rmsnorm.md") == ({"Mean?": "no mean"}, "two\nlines")
    write_notes(doc, "07-attention.md", "Attention", [("Why?", "better answer")], "")
    doc.save()
    doc = StatusDoc.load(workspace.status_file)
    assert read_notes(doc, "07-attention.md")[0] == {"Why?": "better answer"}
    assert doc.text.count("first answer") == 0 and doc.text.count("## Lesson notes") == 1
    # the status doc still reads its own parts: no phase, question or log was disturbed
    assert len(doc.items) == 17 and all(q.id for q in doc.questions)
    assert [e.text for e in doc.log] == ["my own entry"] or any("my own entry" in e.text for e in doc.log)


async def test_workbench_errors_are_notifications_with_the_fix(tmp_path, monkeypatch, workspace):
    monkeypatch.setenv("NANOCHAT_LESSONS_DIR", str(tmp_path / "no-lessons-here"))
    workspace.status_file.unlink()
    workspace.status_file.mkdir()  # STATUS.md that cannot be read as a file
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.pause(0.3)
        await pilot.press("2")
        await until(pilot, lambda: any("No lessons" == n.title for n in app._notifications))
        messages = {n.title: n.message for n in app._notifications}
        assert "is a directory" in messages["STATUS.md"] and "phases without your ticks" in messages["STATUS.md"]
        assert "NANOCHAT_LESSONS_DIR" in messages["No lessons"]
        await pilot.press("1")
        checklist = app.screen.query_one("#checklist")
        shown = "\n".join(s.text for s in checklist.render_lines(checklist.virtual_region.reset_offset))
        assert "1 Model construction  0/5" in shown  # the plain phase list stands in for the file's ticks


# what a learner finds in the palette (ctrl+p) on every screen, and on each screen in addition: written out here,
# not derived from the key bindings the palette itself is built from
PALETTE_EVERYWHERE = {"Companion", "Lessons", "Plot", "Runs", "Chat", "Re-run", "Edit", "Help", "Hint", "Lesson",
                      "Side by side", "Attention", "Track", "Math primer", "Glossary"}
PALETTE_ON_SCREEN = {
    "1": {"Components", "Issue", "Shapes", "Prints", "Side by side tab", "Reset method", "Undo reset"},
    "2": {"Search", "Contents", "Notes", "Close search / notes"},
    "3": set(),
    "4": {"Start", "Cancel", "Refresh", "Evaluate", "Report card"},
    "5": {"Stop", "Clear", "Train tiny", "Rescan", "Web chat", "Top-5"},
}


async def test_every_action_of_every_screen_is_in_the_command_palette(lessons, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "empty-base"))  # the chat screen has nothing to load
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        for key, on_screen in PALETTE_ON_SCREEN.items():
            await pilot.press(key)
            await pilot.pause(0.2)
            titles = {c.title for c in app.get_system_commands(app.screen)}
            missing = (PALETTE_EVERYWHERE | on_screen) - titles
            assert not missing, (key, missing)
            others = set().union(*PALETTE_ON_SCREEN.values()) - on_screen
            assert not titles & others, (key, titles & others)  # no other screen's actions
        # a screen command from the palette runs on that screen
        await pilot.press("4")
        await pilot.pause(0.2)
        app.screen.query_one("#run-steps").value = "abc"
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Start")
        command.callback()
        await until(pilot, lambda: any("whole number" in n.message for n in app._notifications))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_search_goes_on_into_the_other_lessons_and_contents_and_code_keep_their_room(lessons, workspace, size):
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=size) as pilot:
        screen = await open_lesson(app, pilot, "07-attention.md")
        await pilot.press("slash")
        await pilot.press(*"root-mean-square", "enter")  # only in the RMSNorm lesson
        await until(pilot, lambda: screen.current.name == "05-rmsnorm.md" and screen._hits)
        assert "root-mean-square" in screen._hits[0]._content.plain
        await pilot.press("escape")
        # a long code line wraps: its end is on screen
        fence = screen.query_one("#lesson-viewer").document.query_one("MarkdownFence")
        code = fence.query_one("#code-content")
        await until(pilot, lambda: code.region.width > 0)
        assert code.region.right <= fence.region.right  # nothing beyond the reader's edge
        shown = "".join(strip.text for strip in code.render_lines(code.region.reset_offset)).replace(" ", "")
        assert "END_OF_LINE" in shown
        # the table of contents takes the lesson list's place: the text keeps a readable width
        document = screen.query_one("#lesson-viewer").document
        before = document.region.width
        await pilot.press("t")
        await until(pilot, lambda: screen.has_class("-toc-open"))
        await pilot.pause(0.2)
        assert document.region.width >= min(before, 40)

"""Snapshots of every screen at 120×40 and at 80×24 (pytest-textual-snapshot; `pytest --snapshot-update` accepts
changes, after looking at them).

Each snapshot is taken in a fixed state: a fresh workspace (paths shown relative to it), a fixed lessons folder,
an empty checkpoint folder at a fixed path, the clock of the status bar pinned, cursors not blinking.
"""

import shutil
import time
from pathlib import Path

import pytest

from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp

pytestmark = pytest.mark.timeout(240)

SIZES = pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
FIXED_BASE = Path("/tmp/nanochat-workbench-snapshot-base")  # shown on the chat screen: must not vary
PINNED_TIME = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

LESSON = """---
title: Causal self-attention
teaches: [CausalSelfAttention.__init__, CausalSelfAttention.forward]
questions:
  - q: Why are the scores divided by sqrt(D)?
    a: So the softmax stays soft as D grows.
---

# Causal self-attention

Every position mixes the values of the positions before it, weighted by how well its query matches their keys.

## `CausalSelfAttention.__init__`

Four projections: queries, keys, values, and the output.

## `CausalSelfAttention.forward`

| step | shape |
|---|---|
| q | (B, T, H, D) |
| k, v | (B, T, Hkv, D) |

The scores are scaled by 1/sqrt(D) before the softmax.
"""


@pytest.fixture
def snap_env(tmp_path, monkeypatch):
    ws = init_workspace(tmp_path / "ws")
    monkeypatch.chdir(ws.directory)
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "07-attention.md").write_text(LESSON)
    (lessons / "08-mlp.md").write_text("---\ntitle: The MLP\nteaches: [MLP.forward]\n---\n\n# The MLP\n")
    monkeypatch.setenv("NANOCHAT_LESSONS_DIR", str(lessons))
    shutil.rmtree(FIXED_BASE, ignore_errors=True)
    FIXED_BASE.mkdir()
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(FIXED_BASE))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield ws
    shutil.rmtree(FIXED_BASE, ignore_errors=True)
    monkeypatch.delenv("TZ")
    time.tzset()


async def settle(pilot, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app never reached the state to snapshot"
        await pilot.pause(0.05)


def freeze(app) -> None:
    """Pin what varies between runs: the time in the status bar, blinking cursors, toasts."""
    if app.last_finished is not None:
        app.last_finished, app.last_seconds = PINNED_TIME, 0.42
    for widget in app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    app.clear_notifications()


@SIZES
def test_companion_on_a_fresh_workspace(snap_compare, snap_env, runner, size):
    app = WorkbenchApp(snap_env.directory, runner=runner)

    async def ready(pilot):
        await settle(pilot, lambda: app.report is not None and not app.checking and "watching:" in app.watch_mode)
        await pilot.pause(0.2)
        freeze(app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@SIZES
def test_lessons_open_at_a_method_with_notes(snap_compare, snap_env, size):
    app = WorkbenchApp(snap_env.directory, run_checks=False)

    async def ready(pilot):
        app.lesson_request = ("07-attention.md", "CausalSelfAttention.forward")
        await pilot.press("2")
        await settle(pilot, lambda: getattr(app.screen, "current", None) is not None)
        await settle(pilot, lambda: not [w for w in app.workers if w.group == "lesson-load" and w.is_running])
        if size[0] < 110:
            await pilot.press("n")  # under 110 columns the notes take the lesson list's place
        await pilot.pause(0.3)
        freeze(app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@SIZES
def test_plot_before_any_training_step(snap_compare, snap_env, size):
    app = WorkbenchApp(snap_env.directory, run_checks=False)

    async def ready(pilot):
        await pilot.press("3")
        await pilot.pause(0.4)
        freeze(app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@SIZES
def test_runs_with_no_runs_yet(snap_compare, snap_env, size):
    app = WorkbenchApp(snap_env.directory, run_checks=False)

    async def ready(pilot):
        await pilot.press("4")
        await settle(pilot, lambda: "CPU" in str(app.screen.query_one("#run-metrics").state)
                     or "GPU" in str(app.screen.query_one("#run-metrics").state))
        await pilot.pause(0.3)
        freeze(app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@SIZES
def test_chat_without_a_checkpoint(snap_compare, snap_env, size):
    app = WorkbenchApp(snap_env.directory, run_checks=False)

    async def ready(pilot):
        await pilot.press("5")
        await pilot.pause(0.3)
        freeze(app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@SIZES
def test_help(snap_compare, snap_env, size):
    app = WorkbenchApp(snap_env.directory, run_checks=False)

    async def ready(pilot):
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        freeze(app)

    assert snap_compare(app, terminal_size=size, run_before=ready)

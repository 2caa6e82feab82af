"""The TUI over a workspace with track files: every learner file is watched, the companion shows the file saved
last (its first thing to fix, its components), two files saved together are both checked, `T` steps through the
files (a track file not yet checked is checked when shown), `h`/`v`/`R`/`u` act on the track function shown, and `i`
files the error shown in STATUS.md's issue log. Track files run through the real track runner (workbench/tracks/runner.py); the GPT file through a warm
runner shared by the module."""

import asyncio
from pathlib import Path

import pytest

import nanochat
from workbench.course.workspace import init_workspace
from workbench.tracks.runner import spare_child
from workbench.tui.app import WorkbenchApp

pytestmark = [pytest.mark.timeout(300), pytest.mark.anyio]

REFERENCE = Path(nanochat.__file__).parent
GOOD_SCALE = "return max(1, shape[-2] / shape[-1]) ** 0.5"
BAD_SCALE = "return max(1, shape[-1] / shape[-2]) ** 0.5"  # the ratio upside down


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workspace(tmp_path):
    """learner_gpt.py (the skeleton), the optimizer track's phase in STATUS.md, a verbatim learner_adamw.py, and
    learner_muon.py with a bug, saved last."""
    ws = init_workspace(tmp_path / "ws")
    init_workspace(ws.directory, track="optimizer")  # adds the track's skeletons and its phase
    (ws.directory / "learner_adamw.py").write_text((REFERENCE / "adamw.py").read_text())
    muon = (REFERENCE / "muon.py").read_text()
    assert muon.count(GOOD_SCALE) == 1
    (ws.directory / "learner_muon.py").write_text(muon.replace(GOOD_SCALE, BAD_SCALE))
    return ws


async def until(pilot, condition, timeout=120.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def screen_text(widget) -> str:
    return "\n".join(strip.text.rstrip() for strip in widget.render_lines(widget.virtual_region.reset_offset))


def panel(app) -> str:
    return screen_text(app.screen.query_one("#next-step-body"))


def flat(app) -> str:
    """The panel's text with its wrapping undone."""
    return " ".join(panel(app).split())


def checked(app, name: str, before=None) -> bool:
    return name in app.reports and app.reports[name] is not before and not app.checking


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_the_companion_opens_on_the_track_file_saved_last_and_i_files_its_mismatch(workspace, runner, size):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=size, notifications=True) as pilot:
        await until(pilot, lambda: checked(app, "learner_muon.py"))
        assert app.shown_file == "learner_muon.py"
        await until(pilot, lambda: "upside down" in flat(app))  # the panel lays out the new text first
        shown = panel(app)
        assert "learner_muon.py" in shown and "Optimizer" in shown
        assert "MISMATCH  update_scale" in shown
        table = app.screen.query_one("#component-rows")
        assert [table.get_row_at(i)[0] for i in range(table.row_count)][:2] == ["zeropower_via_newtonschulz5",
                                                                                "update_scale"]
        assert "learner_muon.py" in screen_text(app.screen.query_one("#top-bar"))
        # the checklist: the track's phase in view, its passing functions ticked in STATUS.md, the bug marked
        await until(pilot, lambda: "- [x] `muon_update`" in workspace.status_file.read_text())
        assert "- [ ] `update_scale`" in workspace.status_file.read_text()
        scroll = app.screen.query_one("#checklist-scroll")
        top = round(scroll.scroll_y)
        visible = screen_text(app.screen.query_one("#checklist")).splitlines()[top:top + scroll.size.height]
        assert any(line.startswith("6 Optimizer") for line in visible), visible
        assert any(line.strip() == "✘ update_scale" for line in visible), visible

        await pilot.press("i")  # the mismatch shown goes into STATUS.md's issue log, dated
        await until(pilot, lambda: "update_scale does not match the reference" in workspace.status_file.read_text())
        assert "upside down" in workspace.status_file.read_text()
        await until(pilot, lambda: any(n.title == "Filed in STATUS.md's issue log" for n in app._notifications))

        await pilot.press("T")  # the next file round the list: the GPT file, its next TODO
        await until(pilot, lambda: app.shown_file == "learner_gpt.py" and checked(app, "learner_gpt.py"))
        await until(pilot, lambda: "NEXT  GPT.__init__" in panel(app))


async def test_T_checks_a_file_when_first_shown_and_a_save_brings_its_file_back(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: checked(app, "learner_muon.py") and checked(app, "learner_gpt.py"))
        assert app.reports["learner_muon.py"].result["timings"]["child"] == "spare"  # started at mount
        assert "learner_adamw.py" not in app.reports  # not saved, not shown: not checked yet
        await pilot.press("T", "T")
        await until(pilot, lambda: app.shown_file == "learner_adamw.py" and checked(app, "learner_adamw.py"))
        await until(pilot, lambda: "All checks pass" in flat(app) and "nanochat.adamw" in flat(app))

        before = app.reports["learner_muon.py"]
        (workspace.directory / "learner_muon.py").write_text((REFERENCE / "muon.py").read_text())  # fixed
        await until(pilot, lambda: app.shown_file == "learner_muon.py" and checked(app, "learner_muon.py", before))
        await until(pilot, lambda: "All checks pass" in panel(app))
        assert app.summary == "4/4 pass"
    assert spare_child() is None  # the waiting track child ended with the app


async def test_two_track_files_saved_together_are_both_checked(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: checked(app, "learner_muon.py") and checked(app, "learner_gpt.py"))
        before = app.reports["learner_muon.py"]
        (workspace.directory / "learner_muon.py").write_text((REFERENCE / "muon.py").read_text())  # fixed
        adamw = (REFERENCE / "adamw.py").read_text()
        (workspace.directory / "learner_adamw.py").write_text(adamw + "\n# saved again\n")
        # the second save does not cancel the first file's check: each file has its own
        await until(pilot, lambda: checked(app, "learner_muon.py", before) and checked(app, "learner_adamw.py"))
        assert app.reports["learner_muon.py"].result["ok"] and app.reports["learner_adamw.py"].result["ok"]


async def test_h_v_and_R_work_on_the_track_function_shown(workspace, runner):
    muon = workspace.directory / "learner_muon.py"
    broken = muon.read_text()
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: checked(app, "learner_muon.py") and checked(app, "learner_gpt.py"))
        assert app.shown_file == "learner_muon.py" and app.current_method() == "update_scale"
        await pilot.press("h")  # the hint ladder of the function shown: its notes, then its TODO's formula
        await until(pilot, lambda: type(app.screen).__name__ == "HintScreen", timeout=5)
        body = app.screen.query_one("#hint-body")
        await until(pilot, lambda: "Out: a float >= 1" in "\n".join(screen_text(w) for w in body.children), timeout=5)
        await pilot.press("h")
        await until(pilot, lambda: "sqrt(max(1, rows / cols))" in "\n".join(screen_text(w) for w in body.children),
                    timeout=5)
        assert app.hint_levels == {"learner_muon.py:update_scale": 2}
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "CompanionScreen", timeout=5)
        await pilot.press("v")  # the mismatch beside nanochat/muon.py's version
        await until(pilot, lambda: type(app.screen).__name__ == "CompareScreen", timeout=5)
        await until(pilot, lambda: "shape[-1] / shape[-2]" in screen_text(app.screen.query_one("#side-mine-code")),
                    timeout=5)
        assert "shape[-2] / shape[-1]" in screen_text(app.screen.query_one("#side-reference-code"))
        assert "reference (nanochat/muon.py)" in screen_text(app.screen.query_one("#side-reference-title"))
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "CompanionScreen", timeout=5)

        await pilot.press("R")  # back to the TODO that init --track writes, the rest of the file untouched
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=5)
        await pilot.press("y")
        await until(pilot, lambda: muon.read_text() != broken)
        reset = muon.read_text()
        assert BAD_SCALE not in reset and 'raise NotImplementedError("TODO: update_scale' in reset
        assert reset.count("NotImplementedError") == broken.count("NotImplementedError") + 1
        await until(pilot, lambda: "NEXT  update_scale" in panel(app))
        await pilot.press("u")
        await until(pilot, lambda: muon.read_text() == broken)


async def test_a_workspace_of_one_track_only_opens_on_its_file(tmp_path):
    ws = init_workspace(tmp_path / "ws", track="optimizer")
    assert not (ws.directory / "learner_gpt.py").exists()
    app = WorkbenchApp(ws.directory)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await until(pilot, lambda: checked(app, "learner_muon.py") or checked(app, "learner_adamw.py"))
        assert app.shown_file in ("learner_muon.py", "learner_adamw.py")
        assert "NEXT" in panel(app) and app.runner is None  # no GPT file: no GPT worker started
        assert not [n for n in app._notifications if n.severity == "error"]
        (ws.directory / "learner_adamw.py").write_text((REFERENCE / "adamw.py").read_text())
        await until(pilot, lambda: app.shown_file == "learner_adamw.py" and checked(app, "learner_adamw.py")
                    and app.reports["learner_adamw.py"].result["ok"])


async def test_i_files_the_error_shown_with_its_traceback_and_says_when_there_is_none(tmp_path):
    from workbench.tui.session import Report
    ws = init_workspace(tmp_path / "ws")
    app = WorkbenchApp(ws.directory, run_checks=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("i")  # nothing checked yet: nothing to file, and it says so
        await until(pilot, lambda: any("Nothing is wrong" in n.message for n in app._notifications), timeout=10)
        before = ws.status_file.read_text()
        traceback = (f'Traceback (most recent call last):\n  File "{ws.learner_file}", line 90, in forward\n'
                     f'    x = x @ self.w\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (8x256 and 64x256)\n')
        app.report = Report({"ok": False, "stage": "forward", "next_todo": None, "components": [],
                             "error": {"type": "RuntimeError", "qualname": "MLP.forward", "file": str(ws.learner_file),
                                       "line": 90, "traceback": traceback,
                                       "message": "mat1 and mat2 shapes cannot be multiplied (8x256 and 64x256)"}},
                            None, 1.0, 0.0)
        await pilot.press("i")
        await until(pilot, lambda: "RuntimeError in MLP.forward" in ws.status_file.read_text(), timeout=10)
        added = "\n".join(set(ws.status_file.read_text().splitlines()) - set(before.splitlines()))
        assert "mat1 and mat2 shapes cannot be multiplied" in added and "x = x @ self.w" in added

"""The companion screen with the real runner: saves of the learner file drive the next-step panel, the
checklist follows STATUS.md (ticks made by the workbench and by hand), regressions lead with a diff, errors
show the code and a trimmed traceback, and a workspace is offered when there is none.

One warm runner is shared by the tests (starting torch and the reference model once costs seconds)."""

import asyncio
from pathlib import Path

import pytest

from workbench.check.client import Runner
from workbench.course.methods import reference_method, replace_method
from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp

pytestmark = [pytest.mark.timeout(240), pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workspace(tmp_path):
    return init_workspace(tmp_path / "ws")


async def until(pilot, condition, timeout=60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def screen_text(widget) -> str:
    """What a widget shows, as plain text (all of it, scrolled out of view or not)."""
    return "\n".join(strip.text.rstrip() for strip in widget.render_lines(widget.virtual_region.reset_offset))


def panel(app) -> str:
    return screen_text(app.screen.query_one("#next-step-body"))


def checklist(app) -> str:
    return screen_text(app.screen.query_one("#checklist"))


async def next_report(app, pilot, write=None, timeout=60.0):
    """Run `write()` (a save), then wait until a new report for it has arrived. Without `write`: the first
    report (the check the app runs when it starts; with a warm runner it may already be there)."""
    before = app.report
    if write is not None:
        write()
        await until(pilot, lambda: app.report is not before and not app.checking, timeout)
    else:
        await until(pilot, lambda: app.report is not None and not app.checking, timeout)
    await pilot.pause(0.1)
    return app.report


def fill(path: Path, *qualnames: str) -> str:
    """Write the reference's code of these methods into the learner file; return the new text."""
    text = path.read_text()
    for q in qualnames:
        text = replace_method(text, q, reference_method(q))
    path.write_text(text)
    return text


async def test_saving_a_method_moves_the_next_todo_on_and_ticks_status_md(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        report = await next_report(app, pilot)
        assert report.result["next_todo"]["qualname"] == "GPT.__init__"
        assert "NEXT  GPT.__init__" in panel(app) and "phase 1" in panel(app)
        assert "raise NotImplementedError" in panel(app)  # the code around the TODO

        report = await next_report(app, pilot, lambda: fill(workspace.learner_file, "GPT.__init__"))
        todo = report.result["next_todo"]["qualname"]
        assert todo != "GPT.__init__"
        assert f"NEXT  {todo}" in panel(app)
        assert report.status_of("GPT.__init__") == "pass"
        # the workbench ticks STATUS.md; the watcher reloads it and the checklist counts the tick
        await until(pilot, lambda: "1 Model construction  1/5" in checklist(app))
        assert "- [x] `GPT.__init__`" in workspace.status_file.read_text()
        assert "✔ GPT.__init__" in checklist(app) and f"→ {todo}" in checklist(app)


async def test_a_tick_made_by_hand_in_status_md_shows_up(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        assert "○ MLP.forward" in checklist(app)
        text = workspace.status_file.read_text().replace("- [ ] `MLP.forward`", "- [x] `MLP.forward`")
        workspace.status_file.write_text(text)
        await until(pilot, lambda: "3 Forward pass  1/6" in checklist(app), timeout=10)
        assert "✔ MLP.forward" in checklist(app)


async def test_a_regression_leads_the_panel_with_the_diff_since_it_passed(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        written = []
        await next_report(app, pilot, lambda: written.append(fill(workspace.learner_file, "GPT.__init__")))
        good = written[0]
        broken = good.replace("        self.config = config\n", "        self.config = config\n        1 / 0\n", 1)
        report = await next_report(app, pilot, lambda: workspace.learner_file.write_text(broken))
        assert [r.qualname for r in report.regressions] == ["GPT.__init__"]
        text = panel(app)
        assert text.startswith("REGRESSION  GPT.__init__ passed before and is now error")
        assert "+        1 / 0" in text  # the diff since it last passed
        assert "ZeroDivisionError" in text
        assert "✘ GPT.__init__" in checklist(app)


async def test_an_error_shows_the_code_around_it_and_a_trimmed_traceback(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        text = workspace.learner_file.read_text().replace("import math\n", "import math\nimport no_such_package\n", 1)
        report = await next_report(app, pilot, lambda: workspace.learner_file.write_text(text))
        assert report.result["error"]["type"] == "ModuleNotFoundError"
        shown = panel(app)
        assert shown.startswith("ERROR  ModuleNotFoundError")
        assert "import no_such_package" in shown  # the snippet, with the offending line
        assert "site-packages" not in shown  # only the learner's frames


async def test_a_newer_save_wins_and_r_reruns_by_hand(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        skeleton = workspace.learner_file.read_text()
        first = replace_method(skeleton, "GPT.__init__", reference_method("GPT.__init__"))
        second = skeleton.replace("import math\n", "import math\nimport no_such_package\n", 1)

        def two_saves():
            workspace.learner_file.write_text(first)
            workspace.learner_file.write_text(second)

        await next_report(app, pilot, two_saves)
        await until(pilot, lambda: app.report.source == second and not app.checking)
        assert app.report.result["error"]["type"] == "ModuleNotFoundError"
        checked = app.report
        await pilot.press("r")
        await until(pilot, lambda: app.report is not checked and not app.checking)
        assert app.report.source == second


async def test_forced_polling_still_checks_every_save_and_says_so(workspace, runner, monkeypatch):
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "1")
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        await until(pilot, lambda: "polling" in app.watch_mode, timeout=5)
        assert "polling" in screen_text(app.screen.query_one(".run-state"))
        report = await next_report(app, pilot, lambda: fill(workspace.learner_file, "GPT.__init__"))
        assert report.status_of("GPT.__init__") == "pass"


async def test_without_a_workspace_it_offers_to_create_one(tmp_path, runner):
    directory = tmp_path / "empty"
    directory.mkdir()
    app = WorkbenchApp(directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "InitWorkspaceScreen", timeout=10)
        await pilot.press("y")
        report = await next_report(app, pilot)
        assert (directory / "learner_gpt.py").exists() and (directory / "STATUS.md").exists()
        assert report.result["next_todo"]["qualname"] == "GPT.__init__"
        # the checklist grew from its one-line placeholder to every phase (its height follows its content)
        assert "5 Generation" in checklist(app) and app.screen.query_one("#checklist").size.height > 20


async def test_declining_to_create_a_workspace_quits_and_writes_nothing(tmp_path, runner):
    directory = tmp_path / "empty"
    directory.mkdir()
    app = WorkbenchApp(directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "InitWorkspaceScreen", timeout=10)
        await pilot.press("n")
        await until(pilot, lambda: app.return_code is not None, timeout=10)
    assert app.return_code == 1 and list(directory.iterdir()) == []


async def test_hint_ladder_reset_with_undo_and_side_by_side(workspace, runner):
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        # hints: shapes, formula, outline, and the reference's code only after a yes
        await pilot.press("h")
        await until(pilot, lambda: type(app.screen).__name__ == "HintScreen", timeout=5)
        body = app.screen.query_one("#hint-body")
        await until(pilot, lambda: "1. shapes" in "\n".join(screen_text(w) for w in body.children), timeout=5)
        for _ in range(2):  # the first rung shows as the ladder opens
            await pilot.press("h")
        await pilot.pause(0.2)
        shown = "\n".join(screen_text(w) for w in body.children)
        assert "1. shapes" in shown and "2. formula" in shown and "3. outline" in shown
        assert "rotary_seq_len" in shown and "reference code" in shown
        await pilot.press("h")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=5)
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.hint_levels["GPT.__init__"] == 3
        await pilot.press("escape")

        # a passing method: v shows it beside the reference's
        written = []
        await next_report(app, pilot, lambda: written.append(fill(workspace.learner_file, "GPT.__init__")))
        good = written[0]
        assert app.last_passed == "GPT.__init__"
        # ... at once, in the companion's side-by-side tab
        tabs = app.screen.query_one("#companion-tabs")
        await until(pilot, lambda: tabs.active == "tab-compare", timeout=5)
        assert "self.rotary_seq_len" in screen_text(app.screen.query_one("#side-mine-code"))
        assert "self.rotary_seq_len" in screen_text(app.screen.query_one("#side-reference-code"))
        await pilot.press("c")
        assert tabs.active == "tab-components"
        # ... and full screen with v
        await pilot.press("v")
        await until(pilot, lambda: type(app.screen).__name__ == "CompareScreen", timeout=5)
        await until(pilot, lambda: "self.rotary_seq_len" in screen_text(app.screen.query_one("#side-mine-code")),
                    timeout=5)
        await pilot.press("escape")

        # break it, reset it to its TODO, undo the reset
        broken = good.replace("        self.config = config\n", "        self.config = config\n        1 / 0\n", 1)
        await next_report(app, pilot, lambda: workspace.learner_file.write_text(broken))
        await pilot.press("R")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=5)
        await pilot.press("y")
        await until(pilot, lambda: "NotImplementedError(\"TODO: create config" in workspace.learner_file.read_text())
        reset_text = workspace.learner_file.read_text()
        assert reset_text.count("NotImplementedError") == broken.count("NotImplementedError") + 1
        report = await next_report(app, pilot)
        assert report.result["next_todo"]["qualname"] == "GPT.__init__"
        await pilot.press("u")
        await until(pilot, lambda: workspace.learner_file.read_text() == broken)


async def test_the_first_check_shows_the_checker_preparing_with_a_progress_bar(workspace):
    fresh = Runner(start=False)  # not warm: the app starts it and shows its warm-up stages
    app = WorkbenchApp(workspace.directory, runner=fresh)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            bar = app.screen.query_one("#warmup-bar")
            await until(pilot, lambda: bar.display and "Preparing the checker" in panel(app), timeout=30)
            await next_report(app, pilot, timeout=120)
            assert not bar.display and app.warmup is None
            assert "GPT.__init__" in panel(app)
    finally:
        fresh.close()


async def test_a_checker_that_cannot_start_is_a_notification_not_a_crash(workspace):
    broken = Runner(python=str(workspace.directory / "no-such-python"), start=False)
    app = WorkbenchApp(workspace.directory, runner=broken)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await until(pilot, lambda: app._notifications, timeout=10)
        note = list(app._notifications)[0]
        assert note.title == "Check not run" and "could not start the check worker" in note.message
        assert "Press r to try again" in note.message
        assert not app.checking and app.report is None


async def test_a_complete_file_passes_and_its_losses_reach_the_sparklines_and_the_plot(workspace, runner):
    reference = (Path(__file__).resolve().parent.parent / "nanochat" / "gpt.py").read_text()
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await next_report(app, pilot)
        report = await next_report(app, pilot, lambda: workspace.learner_file.write_text(reference), timeout=120)
        assert report.result["ok"], report.result.get("lead")
        losses = report.result["losses"]
        assert len(losses) >= 2
        assert panel(app).startswith("✔ All checks pass")
        assert app.screen.query_one("#loss-run").data == losses
        # a second save: the plot shows this save and the one before
        await next_report(app, pilot, lambda: workspace.learner_file.write_text(reference + "\n# again\n"),
                          timeout=120)
        await pilot.press("3")
        await pilot.pause(0.5)
        curves = app.screen.query_one("#plot").curves
        assert [c.label for c in curves] == ["this save", "1 save ago"]
        assert curves[1].values == losses
        assert app.session.loss_history()[-2:] == [losses[-1], app.report.result["losses"][-1]]


def relu_mlp_with_a_todo(path: Path) -> None:
    """Every method written as the reference's except GPT.generate (a TODO left), with MLP.forward using relu."""
    from workbench.course.phases import ALL_METHODS
    text = path.read_text()
    for q in ALL_METHODS:
        if q != "GPT.generate":
            text = replace_method(text, q, reference_method(q))
    path.write_text(text.replace("F.relu(x).square()", "F.relu(x)"))


def visible(widget) -> str:
    """The lines of a scrolling widget's content that are on screen now (not scrolled away)."""
    lines = screen_text(widget).splitlines()
    top = int(widget.parent.scroll_y) if hasattr(widget.parent, "scroll_y") else 0
    return "\n".join(lines[top:top + widget.parent.size.height])


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_a_wrong_method_shows_beside_the_next_todo_and_every_reason_reads_in_full(workspace, runner, size):
    relu_mlp_with_a_todo(workspace.learner_file)
    app = WorkbenchApp(workspace.directory, runner=runner)
    async with app.run_test(size=size) as pilot:
        report = await next_report(app, pilot, timeout=120)
        assert report.result["next_todo"]["qualname"] == "GPT.generate"
        shown = visible(app.screen.query_one("#next-step-body"))
        assert "FIRST TO FIX  MLP.forward" in shown and "relu instead of relu²" in shown.replace("\n", " ")
        assert "NEXT  GPT.generate" in panel(app)
        # the components table: c focuses it; the highlighted row's whole reason is shown, wrapped, below it
        await pilot.press("c")
        table = app.screen.query_one("#component-rows")
        assert table.has_focus
        row = next(i for i, c in enumerate(report.components) if c["qualname"] == "GPT (whole model)")
        for _ in range(row):
            await pilot.press("down")
        detail = report.components[row]["detail"]
        await until(pilot, lambda: "follows from the MLP.forward mismatch above" in
                    " ".join(screen_text(app.screen.query_one("#component-detail-text")).split()), timeout=5)
        pane = app.screen.query_one("#component-detail")
        assert pane.region.bottom <= app.screen.query_one("#companion-tabs").region.bottom  # on screen
        assert len(detail) > table.size.width  # the table alone cuts it


async def test_the_method_an_error_is_in_is_the_current_one(workspace):
    """A crash in MLP.forward with a regressed training row: l, h and R act on MLP.forward, not on "training"."""
    from workbench.tui.session import Regression, Report
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(120, 40)) as pilot:
        result = {"ok": False, "stage": "train", "next_todo": None, "components": [
            {"qualname": "MLP.forward", "status": "error", "detail": "Timeout"},
            {"qualname": "training", "status": "error", "detail": "not reached"}],
            "error": {"type": "Timeout", "message": "no progress", "qualname": "MLP.forward",
                      "file": str(workspace.learner_file), "line": 80}}
        app.report = Report(result, None, 1.0, 0.0, [Regression("training", "error", "", "")])
        assert app.current_method() == "MLP.forward"
        await pilot.press("h")
        await until(pilot, lambda: type(app.screen).__name__ == "HintScreen", timeout=5)
        assert app.screen.qualname == "MLP.forward"

"""Experiments in the TUI (issue 19): a method marked `# workbench: experiment` shows as "experiment" (not a
failure) in the components and the checklist, the companion shows both models' held-out losses side by side and
plots the two training-loss curves, and the Plot screen draws them too. The fast tests feed the app a result in
the check's schema; the slow one checks a real GELU MLP in the warm runner."""

import asyncio
from pathlib import Path

import pytest

import nanochat
from workbench.check.result import Status
from workbench.course.workspace import init_workspace
from workbench.tui.app import WorkbenchApp
from workbench.tui.session import Report

pytestmark = [pytest.mark.timeout(300), pytest.mark.anyio]

REFERENCE = (Path(nanochat.__file__).parent / "gpt.py").read_text()
RELU2 = "        x = F.relu(x).square()\n"
GELU_MARKED = REFERENCE.replace(RELU2, "        x = F.gelu(x)  # workbench: experiment — GELU instead of relu²\n")
MINE = [6.9, 6.1, 5.4, 5.0, 4.8]
THEIRS = [6.9, 6.3, 5.8, 5.5, 5.3]
RESULT = {"ok": True, "stage": "done", "next_todo": None, "error": None, "losses": [],
          "components": [{"qualname": "MLP.forward", "phase": 3, "status": Status.EXPERIMENT,
                          "detail": "experiment (not a failure): looks like your code uses gelu instead of relu²",
                          "max_abs_diff": 0.42},
                         {"qualname": "norm", "phase": 3, "status": Status.PASS, "detail": "matches"},
                         {"qualname": "GPT (whole model)", "status": Status.PASS, "detail": "matches",
                          "follows_experiment": ["MLP.forward"]}],
          "experiment": {"qualnames": ["MLP.forward"], "steps": 5, "tokens_per_step": 128,
                         "optimizer": "AdamW, lr 0.003 on every parameter, the same for both", "same_start": True,
                         "learner_losses": MINE, "reference_losses": THEIRS, "learner_final": 4.75,
                         "reference_final": 5.25, "reason": None}}


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def until(pilot, condition, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def screen_text(widget) -> str:
    return "\n".join(strip.text.rstrip() for strip in widget.render_lines(widget.virtual_region.reset_offset))


def plotted(plot) -> list[tuple[str, list[float]]]:
    return [(c.label, c.values) for c in plot.curves]


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_an_experiment_row_shows_both_final_losses_and_both_curves(tmp_path, size):
    ws = init_workspace(tmp_path / "ws")
    app = WorkbenchApp(ws.directory, run_checks=False)
    async with app.run_test(size=size) as pilot:
        app.report = Report(RESULT, None, 1.0, 0.0)
        panel = app.screen.query_one("#next-step-body")
        await until(pilot, lambda: "EXPERIMENT  MLP.forward" in screen_text(panel))
        text = " ".join(screen_text(panel).split())
        assert "All checks pass" in text
        assert "yours 4.7500 · reference 5.2500 (-0.5000)" in text
        plot = app.screen.query_one("#experiment-plot")
        assert plotted(plot) == [("your model", MINE), ("reference", THEIRS)] and plot.display
        table = app.screen.query_one("#component-rows")
        assert str(table.get_row_at(0)[1]) == "experiment"
        assert "◇ MLP.forward" in screen_text(app.screen.query_one("#checklist"))
        await pilot.press("c", "down", "down")  # a row that passes with the experiment in place says so
        detail = app.screen.query_one("#component-detail-text")
        await until(pilot, lambda: "experiment in place: MLP.forward" in " ".join(screen_text(detail).split()))
        # the plot is reachable by scrolling the panel, at 80x24 too
        next_step = app.screen.query_one("#next-step")
        next_step.scroll_to_widget(plot, animate=False)
        await pilot.pause(0.1)
        assert next_step.region.overlaps(plot.region)  # on screen, inside the panel

        await pilot.press("3")  # and on the Plot screen, beside the saves' curves
        await until(pilot, lambda: app.current_mode == "plot")
        big = app.screen.query_one("#plot")
        await until(pilot, lambda: ("experiment: your model", MINE) in plotted(big))
        assert ("experiment: reference", THEIRS) in plotted(big)

        await pilot.press("1")  # a result without an experiment hides the plot again
        app.report = Report({**RESULT, "experiment": None}, None, 1.0, 0.0)
        await until(pilot, lambda: not app.screen.query_one("#experiment-plot").display)


@pytest.mark.slow
async def test_a_marked_gelu_mlp_is_an_experiment_in_the_companion(tmp_path, runner):
    ws = init_workspace(tmp_path / "ws")
    ws.learner_file.write_text(GELU_MARKED)
    app = WorkbenchApp(ws.directory, runner=runner)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.report is not None and not app.checking, timeout=280)
        assert app.report.status_of("MLP.forward") == Status.EXPERIMENT
        assert app.report.result["ok"] is True
        text = " ".join(screen_text(app.screen.query_one("#next-step-body")).split())
        assert "EXPERIMENT MLP.forward" in text and "held-out loss after" in text
        curves = plotted(app.screen.query_one("#experiment-plot"))
        assert [label for label, _ in curves] == ["your model", "reference"]
        assert curves[0][1] != curves[1][1]

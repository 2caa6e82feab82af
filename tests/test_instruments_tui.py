"""The TUI side of the instruments: the Plot screen shows the last `nanochat-workbench compare`."""

import pytest

from workbench.course.workspace import init_workspace
from workbench.instruments.compare import save_results
from workbench.tui.app import WorkbenchApp

pytestmark = [pytest.mark.timeout(300), pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_plot_shows_both_curves_of_the_last_comparison(tmp_path):
    workspace = init_workspace(tmp_path / "ws")
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        await pilot.pause(0.3)
        assert app.screen.query_one("#plot").curves == []
        save_results(workspace.directory, {"loss": [8.3, 7.9, 7.1]}, {"loss": [8.3, 7.8, 7.0]})
        await pilot.press("1")
        await pilot.press("3")  # back on the plot: the comparison that finished meanwhile is there
        await pilot.pause(0.3)
        curves = app.screen.query_one("#plot").curves
        assert [c.label for c in curves] == ["compare: your model", "compare: reference"]
        assert curves[0].values == [8.3, 7.9, 7.1] and curves[1].steps == [1, 2, 3]


async def _until(pilot, app, text, timeout=120.0):
    import time
    deadline = time.monotonic() + timeout
    while text not in _attention_text(app):
        assert time.monotonic() < deadline, f"no {text!r} in the attention view: {_attention_text(app)}"
        await pilot.pause(0.2)


def _attention_text(app) -> str:
    from rich.console import Console
    console = Console(width=200, record=True)
    if app.screen.body is None:
        return ""
    console.print(app.screen.body)
    return console.export_text()


async def test_attention_view_says_not_yet_then_draws_the_map_after_a_save(tmp_path):
    from pathlib import Path
    workspace = init_workspace(tmp_path / "ws")
    app = WorkbenchApp(workspace.directory, run_checks=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await _until(pilot, app, "still a TODO")
        assert "not yet: GPT.__init__ is still a TODO" in _attention_text(app)
        reference = Path(__file__).resolve().parent.parent / "nanochat" / "gpt.py"
        workspace.learner_file.write_text(reference.read_text())
        app.report = None  # what a finished check of the save does: the view redraws
        await _until(pilot, app, "attention: layer 0, head 0")
        await pilot.press("down")
        await _until(pilot, app, "attention: layer 1, head 0")
        assert "every head" in _attention_text(app)

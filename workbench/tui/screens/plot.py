"""The plot screen: a large loss plot of the latest check's training steps and of the saves before it, and the
last `nanochat-workbench compare` (your model and the reference trained on the same batches), and the two
training-loss curves of the latest experiment (a method marked `# workbench: experiment`)."""

from textual.app import ComposeResult
from textual.widgets import Footer

from workbench.instruments.compare import load_results
from workbench.tui.screens.base import WorkbenchScreen
from workbench.tui.widgets.loss_plot import Curve, LossPlot
from workbench.tui.widgets.next_step import experiment_curves
from workbench.tui.widgets.run_state import RunState
from workbench.tui.widgets.top_bar import TopBar

PREVIOUS_SAVES = 4


class PlotScreen(WorkbenchScreen):
    def compose(self) -> ComposeResult:
        yield TopBar(id="top-bar")
        yield LossPlot(title="loss per step: this save and the saves before it",
                       empty="no training steps yet (they start once the forward pass and optimizers work)",
                       id="plot")
        yield RunState(classes="run-state")
        yield Footer()

    def on_mount(self) -> None:
        self.app.bind_run_state(self.query_one(RunState))
        self.query_one(TopBar).mode, self.query_one(TopBar).file = "plot", self.app.learner_path.name
        self.watch(self.app, "report", self._show)

    def on_screen_resume(self) -> None:
        self._show(self.app.report)  # a comparison may have finished meanwhile

    def _show(self, report) -> None:
        session = self.app.session
        curves = []
        if report is not None and report.result.get("losses"):
            losses = list(report.result["losses"])
            curves.append(Curve("this save", list(range(1, len(losses) + 1)), losses))
        if session is not None:
            previous = session.previous_runs(PREVIOUS_SAVES)
            for age, losses in enumerate(reversed(previous), start=1):
                curves.append(Curve(f"{age} save{'s' if age > 1 else ''} ago", list(range(1, len(losses) + 1)),
                                    losses))
        compared = load_results(self.app.learner_path.parent)
        for who, label in (("learner", "compare: your model"), ("reference", "compare: reference")):
            losses = (compared or {}).get(who, {}).get("loss") or []
            if losses:
                curves.append(Curve(label, list(range(1, len(losses) + 1)), losses))
        for curve in experiment_curves(report.result.get("experiment") if report is not None else None):
            curves.append(Curve(f"experiment: {curve.label}", curve.steps, curve.values))
        self.query_one(LossPlot).curves = curves

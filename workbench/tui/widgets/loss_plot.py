"""A loss plot (plotext through textual-plotext): one or more labelled curves of loss against step."""

from dataclasses import dataclass

from textual.reactive import reactive
from textual_plotext import PlotextPlot

# plotext colour names, newest curve first
REDRAW_S = 0.15
COLORS = ("cyan", "orange", "magenta", "green", "blue", "red", "yellow")


@dataclass
class Curve:
    label: str
    steps: list[float]
    values: list[float]


class LossPlot(PlotextPlot):
    curves: reactive[list[Curve]] = reactive(list, always_update=True)

    def __init__(self, title: str = "loss", empty: str = "no losses yet", **kwargs):
        super().__init__(**kwargs)
        self.title, self.empty = title, empty
        self._draw_pending = False

    def on_mount(self) -> None:
        super().on_mount()
        self._draw()

    def watch_curves(self) -> None:
        # a fast stream of points is coalesced into at most ~7 redraws a second
        if self.is_mounted and not self._draw_pending:
            self._draw_pending = True
            self.set_timer(REDRAW_S, self._draw)

    def _draw(self) -> None:
        self._draw_pending = False
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("step")
        drawn = [c for c in self.curves if c.values]
        if not drawn:
            plt.title(f"{self.title}: {self.empty}")
        for i, curve in enumerate(drawn):
            plt.plot(curve.steps, curve.values, label=curve.label, marker="braille", color=COLORS[i % len(COLORS)])
        self.refresh()

"""A loss plot (plotext through textual-plotext): one or more labelled curves of loss against step, on whole-number
step ticks; curves with the same points are drawn once, labelled with every name they stand for."""

from dataclasses import dataclass

from textual.reactive import reactive
from textual_plotext import PlotextPlot

REDRAW_S = 0.15
MAX_TICKS = 8
# plotext colour names, newest curve first
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
        drawn = merge_identical([c for c in self.curves if c.values])
        if not drawn:
            plt.title(f"{self.title}: {self.empty}")
        for i, curve in enumerate(drawn):
            plt.plot(curve.steps, curve.values, label=curve.label, marker="braille", color=COLORS[i % len(COLORS)])
        ticks = integer_ticks([s for c in drawn for s in c.steps])
        if ticks:
            plt.xticks(ticks, [str(t) for t in ticks])
        self.refresh()


def merge_identical(curves: list[Curve]) -> list[Curve]:
    """One line per distinct curve: saves with the same losses would draw on top of each other, so they share
    one line whose label names them all ("this save = 1 save ago")."""
    merged: list[Curve] = []
    for curve in curves:
        same = next((m for m in merged if m.steps == curve.steps and m.values == curve.values), None)
        if same is None:
            merged.append(Curve(curve.label, list(curve.steps), list(curve.values)))
        else:
            same.label += f" = {curve.label}"
    return merged


def integer_ticks(steps: list[float], most: int = MAX_TICKS) -> list[int]:
    """At most `most` whole-number steps spanning the data (plotext alone labels 2 steps 1.00, 1.25, ...)."""
    if not steps:
        return []
    low, high = int(min(steps)), int(max(steps))
    stride = max(1, -(-(high - low) // (most - 1)))
    return list(range(low, high + 1, stride))

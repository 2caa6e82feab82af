"""The phase checklist: STATUS.md's ticks, overlaid with the live status of each component from the last check.

A tick comes from the file (whoever wrote it: the workbench when a component passes, or the learner by hand);
the colour and mark come from the latest check of the file it belongs to (the shown file's report, else the
other learner files' latest reports), so a ticked method that now fails shows as failing.
"""

from dataclasses import dataclass, field

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from workbench.check.result import Status
from workbench.tui.session import Report

MARKS = {  # live status -> (mark, style)
    Status.PASS: ("✔", "green"),
    Status.MISMATCH: ("✘", "bold red"),
    Status.ERROR: ("✘", "bold red"),
    Status.TODO: ("○", "dim"),
    Status.SKIPPED: ("○", "dim"),
    Status.EXPERIMENT: ("◇", "magenta"),  # differs on purpose: an experiment the learner marked
}


@dataclass
class ChecklistPhase:
    title: str
    items: list[tuple[str, bool]]  # (qualname or label, ticked in STATUS.md)


@dataclass
class ChecklistData:
    phases: list[ChecklistPhase] = field(default_factory=list)
    milestones: list[tuple[str, bool]] = field(default_factory=list)


class Checklist(Static):
    """Rendered as one Text: cheap to redraw on every check, and stable in snapshots."""

    data: reactive[ChecklistData | None] = reactive(None, always_update=True, layout=True)  # height follows
    report: reactive[Report | None] = reactive(None, always_update=True)  # the shown file's (its → next TODO)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.others: list[Report] = []  # the other learner files' latest reports (set before `report`)

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.data is None:
            return Text("STATUS.md not loaded", style="dim")
        todos = {(r.result.get("next_todo") or {}).get("qualname") for r in (self.report, *self.others) if r}
        # the room the scrolling column gives (this widget's own width follows its content)
        room = self.parent.scrollable_content_region.width if self.parent is not None else 0
        for phase in self.data.phases:
            marks = [self._mark(name, ticked, todos) for name, ticked in phase.items]
            done = sum(1 for mark, _ in marks if mark == "✔")  # counted from the marks shown: never behind them
            count = f"  {done}/{len(phase.items)}"
            title = phase.title if room <= 0 or len(phase.title) + len(count) <= room else \
                phase.title[:max(1, room - len(count) - 1)] + "…"  # the count stays in sight
            text.append(title, style="bold")
            text.append(f"{count}\n", style="dim")
            for (name, _), (mark, style) in zip(phase.items, marks):
                text.append(f" {mark} ", style=style)
                text.append(f"{fit(name, room - 3)}\n", style=style if style != "dim" else "")
        if self.data.milestones:
            done = sum(1 for _, ticked in self.data.milestones if ticked)
            text.append("Milestones", style="bold")
            text.append(f"  {done}/{len(self.data.milestones)}\n", style="dim")
            for label, ticked in self.data.milestones:
                text.append(" ✔ " if ticked else " ○ ", style="green" if ticked else "dim")
                text.append(f"{label}\n", style="green" if ticked else "")
        text.rstrip()
        return text

    def line_of(self, names) -> int | None:
        """The line of the first phase that lists one of `names` (its heading), as render() lays them out."""
        line = 0
        for phase in self.data.phases if self.data else []:
            if any(name in names for name, _ in phase.items):
                return line
            line += 1 + len(phase.items)
        return None

    def _live_status(self, name: str) -> str | None:
        for report in (self.report, *self.others):
            status = report.status_of(name) if report is not None else None
            if status is not None:
                return status
        return None

    def _mark(self, name: str, ticked: bool, todos: set) -> tuple[str, str]:
        """(mark, style) of one method: the live status of the last check first, else the file's tick."""
        status = self._live_status(name)
        if name in todos:  # each learner file's next TODO
            return "→", "bold yellow"
        if status in MARKS and status != Status.TODO:
            mark, style = MARKS[status]
            return mark, ("green" if status == Status.PASS and not ticked else style)
        if ticked:
            return "✔", "cyan"  # ticked in the file, nothing live says otherwise
        return "○", "dim"


def fit(name: str, room: int) -> str:
    """A method's name in `room` columns: the class part is shortened first ("CausalSelfAtt….__init__"), so the
    method stays readable; the end goes only when even that does not fit."""
    if room <= 0 or len(name) <= room:
        return name
    owner, dot, method = name.rpartition(".")
    keep = room - len(method) - 2  # the class's first letters, "…" and "."
    if dot and keep >= 3:
        return f"{owner[:keep]}….{method}"
    return name[:room - 1] + "…"

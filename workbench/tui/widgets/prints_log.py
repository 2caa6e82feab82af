"""The learner's own prints from the last check (the runner captures and caps them; we keep the tail)."""

from textual.reactive import reactive
from textual.widgets import Log

from workbench.tui.session import Report


class PrintsLog(Log):
    report: reactive[Report | None] = reactive(None, always_update=True)

    def __init__(self, **kwargs):
        super().__init__(max_lines=1000, highlight=False, **kwargs)

    def watch_report(self, report: Report | None) -> None:
        if not self.is_mounted:
            return
        self.clear()
        text = (report.result.get("stdout_tail") or "") if report else ""
        self.write(text if text else "(your code printed nothing in the last check)")

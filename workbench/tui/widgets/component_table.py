"""The component list: every check against the reference with its status and a one-line reason."""

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from workbench.check.result import Status
from workbench.tui.session import Report

STATUS_STYLE = {Status.PASS: "green", Status.MISMATCH: "bold red", Status.ERROR: "bold red", Status.TODO: "yellow",
                Status.SKIPPED: "dim"}


class ComponentTable(DataTable):
    report: reactive[Report | None] = reactive(None, always_update=True)

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_column("component", key="component")
        self.add_column("status", key="status")
        self.add_column("reason", key="detail")

    def watch_report(self, report: Report | None) -> None:
        if not self.is_mounted or not self.columns:
            return
        self.clear()
        for comp in (report.components if report else []):
            status = comp.get("status", "?")
            self.add_row(comp.get("qualname", "?"), Text(status, style=STATUS_STYLE.get(status, "")),
                         comp.get("detail", ""))

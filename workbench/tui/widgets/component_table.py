"""The component list: every check against the reference with its status and a one-line reason, and below it
the full reason of the highlighted row, wrapped (the table cuts long reasons at its column width)."""

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from workbench.check.result import Component, Status
from workbench.tui.session import Report

STATUS_STYLE = {Status.PASS: "green", Status.MISMATCH: "bold red", Status.ERROR: "bold red", Status.TODO: "yellow",
                Status.SKIPPED: "dim", Status.EXPERIMENT: "bold magenta"}


class ComponentTable(Vertical):
    DEFAULT_CSS = """
    ComponentTable > DataTable { height: 1fr; min-height: 3; }
    ComponentTable > #component-detail { height: auto; max-height: 4; border-top: hkey $panel-lighten-2;
                                          padding: 0 1; }
    """
    report: reactive[Report | None] = reactive(None, always_update=True)

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", zebra_stripes=True, id="component-rows")
        with VerticalScroll(id="component-detail"):
            yield Static("", id="component-detail-text")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("component", key="component")
        table.add_column("status", key="status")
        table.add_column("reason", key="detail")
        self.query_one("#component-detail").display = False

    def watch_report(self, report: Report | None) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(DataTable)
        table.clear()
        for i, comp in enumerate(report.components if report else []):
            status = comp.get("status", "?")
            table.add_row(comp.get("qualname", "?"), Text(status, style=STATUS_STYLE.get(status, "")),
                          comp.get("detail", ""), key=str(i))
        self._show_detail(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail(event.cursor_row)

    def _show_detail(self, row: int) -> None:
        comps = self.report.components if self.report else []
        pane = self.query_one("#component-detail")
        pane.display = 0 <= row < len(comps)
        if pane.display:
            self.query_one("#component-detail-text", Static).update(detail_text(comps[row]))

    def focus_rows(self) -> None:
        self.query_one(DataTable).focus()


def detail_text(comp: Component) -> Text:
    """One row in full: name, status, what it checks, the whole reason and the numbers behind it."""
    status = comp.get("status", "?")
    text = Text.assemble((comp.get("qualname", "?"), "bold"), "  ", (str(status), STATUS_STYLE.get(status, "")))
    if comp.get("check"):
        text.append(f"  ({comp['check']})", style="dim")
    if comp.get("detail"):
        text.append("\n" + comp["detail"])
    if comp.get("max_abs_diff") is not None:
        text.append(f"\nmax |Δ| vs the reference: {comp['max_abs_diff']:.3g}", style="dim")
    if comp.get("follows_experiment"):
        text.append(f"\nchecked with your experiment in place: {', '.join(comp['follows_experiment'])}",
                    style="magenta")
    for note in comp.get("notes") or []:
        text.append(f"\nnote: {note}", style="dim")
    return text

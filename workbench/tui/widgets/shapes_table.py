"""The shapes table: each module and traced function of the forward pass with input/output shapes and dtype."""

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from workbench.tui.session import Report


def _fmt(shapes) -> str:
    if shapes is None:
        return ""
    if isinstance(shapes, (list, tuple)) and shapes and all(isinstance(s, int) for s in shapes):
        return "(" + ", ".join(map(str, shapes)) + ")"
    if isinstance(shapes, (list, tuple)):
        return " ".join(_fmt(s) for s in shapes)
    return str(shapes)


class ShapesTable(DataTable):
    report: reactive[Report | None] = reactive(None, always_update=True)

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key in ("module", "inputs", "output", "dtype", "finite"):
            self.add_column(key, key=key)

    def watch_report(self, report: Report | None) -> None:
        if not self.is_mounted or not self.columns:
            return
        self.clear()
        for row in (report.result.get("shapes") or [] if report else []):
            name = row.get("name", "?")
            if row.get("kind") == "function":
                name = f"ƒ {name}"
            finite = Text("NaN/inf", style="bold red") if row.get("nonfinite") else Text("ok", style="green")
            self.add_row(name, _fmt(row.get("inputs")), _fmt(row.get("output")), str(row.get("dtype", "")), finite)

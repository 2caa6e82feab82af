"""One line of live training metrics from base_train's metrics.jsonl: step, loss, tok/s, MFU, ETA, val bpb."""

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class RunMetrics(Static):
    record: reactive[dict] = reactive(dict, always_update=True)
    total_steps: reactive[int | None] = reactive(None)
    val_bpb: reactive[float | None] = reactive(None)
    state: reactive[str] = reactive("no run yet")

    def render(self) -> Text:
        r = self.record
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{self.state}  ", style="bold")
        if not r:
            return text
        total = f"/{self.total_steps}" if self.total_steps else ""
        text.append(f"step {r.get('step', 0) + 1}{total}  ")  # records count steps from 0
        if r.get("loss") is not None:
            text.append(f"loss {r['loss']:.4f}  ", style="cyan")
        if r.get("tok_per_sec") is not None:
            text.append(f"{r['tok_per_sec']:,.0f} tok/s  ")
        text.append(f"MFU {100 * r['mfu']:.1f}%  " if r.get("mfu") is not None else "MFU n/a  ", style="dim")
        text.append(f"ETA {_duration(r.get('eta_s'))}  ")
        if self.val_bpb is not None:
            text.append(f"val bpb {self.val_bpb:.4f}", style="green")
        return text

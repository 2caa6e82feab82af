"""One line of live training metrics: every metric the run's metrics.jsonl has logged so far (the latest value of
each), e.g. step, loss, tok/s, MFU, ETA, val bpb, min val bpb, elapsed time, tokens seen."""

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

SHOWN = ("loss", "tok_per_sec", "mfu", "eta_s", "val_bpb", "min_val_bpb", "elapsed_s", "total_tokens")
HIDDEN = {"step", "loss_smooth", "lr_mult", "dt_ms"}  # step is shown as n/total; the others are for plots


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def metric_text(name: str, value) -> tuple[str, str]:
    """(text, style) of one metric as the header shows it."""
    if name == "loss":
        return f"loss {value:.4f}", "cyan"
    if name == "tok_per_sec":
        return f"{value:,.0f} tok/s", ""
    if name == "mfu":
        return f"MFU {100 * value:.1f}%", "dim"
    if name in ("eta_s", "elapsed_s"):
        return f"{'ETA' if name == 'eta_s' else 'elapsed'} {_duration(value)}", ""
    if name in ("val_bpb", "min_val_bpb"):
        return f"{'val bpb' if name == 'val_bpb' else 'min'} {value:.4f}", "green"
    if name == "total_tokens":
        return f"{value:,} tokens", "dim"
    return f"{name.replace('_', ' ')} {value:.4g}" if isinstance(value, float) else f"{name} {value}", ""


class RunMetrics(Static):
    metrics: reactive[dict] = reactive(dict, always_update=True, layout=True)  # its height follows
    total_steps: reactive[int | None] = reactive(None)
    state: reactive[str] = reactive("no run yet")

    def render(self) -> Text:
        m = self.metrics
        text = Text()  # wraps: every metric stays readable on 80 columns
        text.append(f"{self.state}  ", style="bold")
        if not m:
            return text
        if m.get("step") is not None:
            total = f"/{self.total_steps}" if self.total_steps else ""
            text.append(f"step {m['step'] + 1}{total}  ")  # records count steps from 0
        names = [n for n in SHOWN if n in m] + sorted(n for n in m if n not in SHOWN and n not in HIDDEN)
        for name in names:
            if isinstance(m[name], (int, float)) and not isinstance(m[name], bool):
                shown, style = metric_text(name, m[name])
                text.append(shown + "  ", style=style)
        return text

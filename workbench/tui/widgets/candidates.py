"""The chat's top-5 view: for each token of the last answer, the five tokens the model found likeliest there.

One row per generated token: the token that came out, then the five candidates with their probabilities (the
model's softmax at temperature 1, before top-k), the one that was drawn in bold. A token drawn from outside the
top 5 (possible at a high temperature) is marked ✗. The chat worker sends the data (its `candidates`
events); this widget only draws it.
"""

from rich.text import Text
from textual.widgets import DataTable

VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}


def shown(text: str, limit: int = 12) -> str:
    """A token's text with its whitespace made visible, cut to `limit` characters."""
    out = "".join(VISIBLE.get(ch, ch) for ch in text)
    return out if len(out) <= limit else out[:limit - 1] + "…"


def percent(p: float) -> str:
    """41%, 5.0%, 0.3%: whole percents from 10% up, one decimal below."""
    return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}"


class CandidatesPanel(DataTable):
    DEFAULT_CSS = """
    CandidatesPanel { height: 35%; min-height: 6; max-height: 16; border: round $accent; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.border_title = "top-5 candidates per token (temperature 1; ✗ drawn outside the top 5)"
        self.tokens = 0

    def on_mount(self) -> None:
        self.add_columns("#", "token", "1st", "2nd", "3rd", "4th", "5th")

    def reset(self) -> None:
        self.clear()
        self.tokens = 0

    def add(self, token: int, text: str, top: list) -> None:
        """One generated token: its id and text, and [[id, text, p], ...] for the five likeliest."""
        self.tokens += 1
        cells = []
        for candidate, candidate_text, p in top[:5]:
            style = "bold reverse" if candidate == token else ""
            cells.append(Text(f"{shown(candidate_text)} {percent(p)}", style=style))
        cells += [Text("")] * (5 - len(cells))
        drawn = Text(shown(text), style="bold")
        if all(candidate != token for candidate, _, _ in top):
            drawn.append(" ✗", style="bold red")
        self.add_row(str(self.tokens), drawn, *cells)
        self.move_cursor(row=self.row_count - 1)

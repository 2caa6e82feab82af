"""The one-line bar at the top of every screen: the workbench, the learner's file, and the screens by key
(abbreviated on narrow terminals, so the file name always fits)."""

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

NARROW = 100  # under this many columns: "wb" and the other screens' names cut to 4 letters, the file kept
SCREENS = (("1", "companion", "Companion"), ("2", "lessons", "Lessons"), ("3", "plot", "Plot"),
           ("4", "runs", "Runs"), ("5", "chat", "Chat"))


class TopBar(Static):
    DEFAULT_CSS = """
    TopBar { height: 1; background: $panel; color: $text; }
    """
    mode: reactive[str] = reactive("companion")
    file: reactive[str] = reactive("")

    def render(self) -> Text:
        narrow = self.size.width < NARROW
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" wb " if narrow else " nanochat-workbench ", style="bold")
        if self.file:
            text.append(f"{self.file} ", style="dim")
        text.append(" ")
        for key, mode, label in SCREENS:
            if mode == self.mode:
                text.append(f" {key} {label} ", style="bold reverse")
            else:
                text.append(f" {key} ", style="bold")
                text.append(f"{label[:4] if narrow else label} ", style="dim")
        return text

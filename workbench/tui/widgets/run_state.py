"""The status bar: whether a check is running (spinner and elapsed time, and how its process was started: forked
or a warm spawned spare), when the last result came and how long it took, and how the workspace is being
watched (native events or polling)."""

import time

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
NARROW = 110  # under this many columns the bar says the same in fewer words


class RunState(Static):
    checking: reactive[bool] = reactive(False)
    started: reactive[float] = reactive(0.0)
    last_finished: reactive[float | None] = reactive(None)  # wall-clock time of the last result
    last_seconds: reactive[float | None] = reactive(None)
    summary: reactive[str] = reactive("")
    check_detail: reactive[str] = reactive("")
    check_child: reactive[str] = reactive("")  # "fork" | "spawn": how the checker starts each check's process
    watch_mode: reactive[str] = reactive("starting the file watcher…")

    def on_mount(self) -> None:
        self._timer = self.set_interval(1 / 8, self.refresh, pause=not self.checking)

    def watch_checking(self, checking: bool) -> None:
        if checking:
            self.started = time.monotonic()
        if self.is_mounted:
            self._timer.resume() if checking else self._timer.pause()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.checking:
            elapsed = time.monotonic() - self.started
            text.append(f" {SPINNER[int(elapsed * 8) % len(SPINNER)]} checking… {elapsed:4.1f}s ", style="bold yellow")
            if self.check_detail:
                text.append(f"({self.check_detail}) ", style="yellow")
            elif self.check_child:
                text.append(f"({self.check_child} child) ", style="dim")
        else:
            text.append(" ● idle ", style="dim")
        narrow = self.size.width < NARROW
        if self.last_finished is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(self.last_finished))
            text.append(f"│ {stamp} ({self.last_seconds:.1f}s) " if narrow else
                        f"│ last result {stamp} in {self.last_seconds:.2f}s ", style="")
            if self.summary:
                text.append(f"│ {self.summary} ", style="bold")
        text.append(f"│ {self.watch_mode}", style="dim" if "polling" not in self.watch_mode else "yellow")
        return text

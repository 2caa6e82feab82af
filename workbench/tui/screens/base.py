"""What every full screen of the workbench shares: worker failures become notifications, not crashes, esc
leaves whatever input field has the focus (so the screen's keys work again), and under 110 columns the footer
drops its padding (compact) so the screen's keys fit in 80.

Worker.StateChanged does not bubble, so a screen's workers report to the screen; this forwards them to the
app's one handler.
"""

from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Select, TextArea
from textual.worker import Worker


NARROW = 110  # columns: the same breakpoint as the app's "-narrow" screens


class WorkbenchScreen(Screen):
    BINDINGS = [Binding("escape", "leave_input", "Leave the field", show=False,
                        tooltip="Leave the field you are typing in (the screen's keys work again)")]

    def on_resize(self, event: events.Resize) -> None:
        for footer in self.query(Footer):
            footer.compact = event.size.width < NARROW

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)

    def action_leave_input(self) -> None:
        if isinstance(self.focused, (Input, TextArea, Select)):
            self.set_focus(None)

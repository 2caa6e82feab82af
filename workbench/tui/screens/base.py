"""What every full screen of the workbench shares: worker failures become notifications, not crashes, and esc
leaves whatever input field has the focus (so the screen's keys work again).

Worker.StateChanged does not bubble, so a screen's workers report to the screen; this forwards them to the
app's one handler.
"""

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Select, TextArea
from textual.worker import Worker


class WorkbenchScreen(Screen):
    BINDINGS = [Binding("escape", "leave_input", "Leave the field", show=False)]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)

    def action_leave_input(self) -> None:
        if isinstance(self.focused, (Input, TextArea, Select)):
            self.set_focus(None)

"""What every full screen of the workbench shares: worker failures become notifications, not crashes.

Worker.StateChanged does not bubble, so a screen's workers report to the screen; this forwards them to the
app's one handler.
"""

from textual.screen import Screen
from textual.worker import Worker


class WorkbenchScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)

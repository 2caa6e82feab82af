"""The TUI in a real terminal (tmux): start it on a fresh workspace, replace one method in the learner file from
outside (as an editor would), and `capture-pane` shows the next TODO moving on. Quits with ctrl+q."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from workbench.course.methods import reference_method, replace_method
from workbench.course.workspace import init_workspace

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"),
]


class Tmux:
    """A tmux server of our own (its own socket), so the TUI gets this process's environment."""

    def __init__(self, width=100, height=30):
        self.socket = f"wb-test-{uuid.uuid4().hex[:8]}"
        self.size = (width, height)

    def run(self, *args, check=True) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check,
                             env=os.environ)
        return out.stdout

    def start(self, command: list[str], cwd) -> None:
        width, height = self.size
        self.run("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), "-c", str(cwd),
                 *command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui", check=False)

    def wait_for(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"the terminal never showed what was expected; last screen:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "tui"], capture_output=True,
                              env=os.environ).returncode == 0

    def kill(self) -> None:
        self.run("kill-server", check=False)


EDITOR_SCRIPT = """
import sys
from pathlib import Path
from workbench.course.methods import reference_method, replace_method
path = Path(sys.argv[-1])
text = path.read_text()
for q in ("GPT._precompute_rotary_embeddings", "Block.__init__", "CausalSelfAttention.__init__", "MLP.__init__"):
    text = replace_method(text, q, reference_method(q))
path.write_text(text)
print("editor done")
"""


def test_the_next_todo_moves_on_in_a_real_terminal(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    editor = tmp_path / "fake_editor.py"  # stands in for $EDITOR: writes the rest of phase 1 and exits
    editor.write_text(EDITOR_SCRIPT)
    tmux = Tmux()
    env = {"TERM": "xterm-256color", "NANOCHAT_BASE_DIR": os.environ["NANOCHAT_BASE_DIR"],
           "EDITOR": f"{sys.executable} {editor}"}
    command = ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "workbench.cli"]  # = nanochat-workbench
    try:
        tmux.start(command, ws.directory)
        screen = tmux.wait_for(lambda s: "NEXT  GPT.__init__" in s, timeout=180)
        assert "Model construction" in screen and "watching" in screen

        text = replace_method(ws.learner_file.read_text(), "GPT.__init__", reference_method("GPT.__init__"))
        ws.learner_file.write_text(text)
        screen = tmux.wait_for(lambda s: "NEXT  " in s and "NEXT  GPT.__init__" not in s, timeout=60)
        assert "✔ GPT.__init__" in screen

        # e hands the terminal to $EDITOR (App.suspend); its save is checked when the TUI comes back
        tmux.run("send-keys", "-t", "tui", "e")
        screen = tmux.wait_for(lambda s: "Model construction  5/5" in s, timeout=60)
        assert "NEXT  GPT.init_weights" in screen or "NEXT  GPT._init_weights" in screen

        tmux.run("send-keys", "-t", "tui", "C-q")
        deadline = time.monotonic() + 15
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), "ctrl+q did not quit the TUI"
    finally:
        tmux.kill()

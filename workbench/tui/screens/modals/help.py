"""The help screen: what each screen is for, and every key — read from the bindings themselves, so a key added to
the app or to a screen is listed here without anyone remembering to (the footer shows only what fits)."""

import importlib

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

INTRO = """\
# nanochat-workbench

Write your own GPT in the learner file, one method at a time — and, with `nanochat-workbench init --track ...`,
the optimizer, the data loader, the training loop and the engine too. Every save is checked against nanochat's
reference, and the companion tells you what to do next in the file you saved last (`T` shows another).

## Screens

| key | screen | what it is for |
|---|---|---|
| `1` | Companion | the next TODO or error, checklist, component checks, shapes, loss, your prints |
| `2` | Lessons | the lessons (the math primer and the glossary among them); answers and notes go into STATUS.md |
| `3` | Plot | the loss of this save against the saves before it, `compare`'s two curves, an experiment's two curves |
| `4` | Runs | train a tiny model here or on a target, watch it, cancel it; evaluate a checkpoint; the report card |
| `5` | Chat | talk to any checkpoint (base, mid, sft, rl), tokens streaming in; serve it as a web chat |

The footer shows the keys that fit; every key is below, and in the command palette (`ctrl+p`). On the Chat
screen typing always goes to the message box.
"""

# (title, module under workbench/tui/screens/, class): the screens whose own keys are listed after the app's
SCREENS = (("Companion", "companion", "CompanionScreen"), ("Lessons", "lessons", "LessonsScreen"),
           ("Runs", "runs", "RunsScreen"), ("Chat", "chat", "ChatScreen"),
           ("The hint ladder", "modals.hints", "HintScreen"), ("Attention maps", "modals.attention", "AttentionScreen"))

OUTRO = "\nPress `escape` to close this help."


def key_names(app, binding: Binding) -> str:
    """`a`, or `escape` / `q` for a binding with several keys, as the footer would write them."""
    if binding.key_display:
        return f"`{binding.key_display}`"
    keys = [k.strip() for k in binding.key.split(",")]
    return " / ".join(f"`{app.get_key_display(Binding(k, binding.action))}`" for k in keys)


def key_table(app, bindings) -> str:
    rows = ["| key | what it does |", "|---|---|"]
    for binding in bindings:
        if not isinstance(binding, Binding):
            continue
        tip = binding.tooltip
        what = tip if tip.startswith(binding.description) else binding.description + (f" — {tip}" if tip else "")
        rows.append(f"| {key_names(app, binding)} | {what.replace('|', '/')} |")
    return "\n".join(rows)


def help_text(app) -> str:
    """The whole help: the screens, the keys that work everywhere, then each screen's own."""
    parts = [INTRO, "## Keys everywhere\n", key_table(app, [*app.BINDINGS, _palette(app)]),
             "\n`esc` also leaves any field you are typing in.\n"]
    for title, module, name in SCREENS:
        screen = getattr(importlib.import_module(f"workbench.tui.screens.{module}"), name)
        own = [b for b in screen.BINDINGS if isinstance(b, Binding) and b.action != "leave_input"]
        parts += [f"## {title}\n", key_table(app, own), ""]
    return "\n".join(parts) + OUTRO


def _palette(app) -> Binding:
    return Binding(app.COMMAND_PALETTE_BINDING, "command_palette", "Command palette",
                   tooltip="every action by name, and the themes")


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 110; height: 90%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(help_text(self.app))

"""The help screen: what each screen is for, and every key."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# nanochat-workbench

Write your own GPT in the learner file, one method at a time. Every save is checked against nanochat's
reference model, and the companion tells you what to do next.

## Screens

| key | screen | what it is for |
|---|---|---|
| `1` | Companion | the next TODO or error, checklist, component checks, shapes, loss, your prints |
| `2` | Lessons | the lesson for each method; your answers and notes go into STATUS.md as you type |
| `3` | Plot | the loss of this save against the saves before it |
| `4` | Runs | train a tiny model here or on a remote target, watch it, cancel it; evaluate a checkpoint; the report card |
| `5` | Chat | talk to any checkpoint (base, mid, sft, rl), tokens streaming in; serve it as a web chat |

## Keys everywhere

| key | action |
|---|---|
| `e` | open the learner file in `$EDITOR` (the TUI steps aside until you quit the editor) |
| `r` | re-run the check by hand (useful when file events do not arrive) |
| `l` | the lesson for the method you are on |
| `h` | the hint ladder for that method: shapes, formula, outline, then (asks first) the reference's code |
| `v` | your method beside the reference's, full screen (the companion's `b` tab shows it when a method passes) |
| `a` | where each attention head of your model looks, redrawn after every save (↑↓ layer, ←→ head) |
| `ctrl+p` | command palette: every action, and the themes |
| `?` | this help |
| `esc` | leave the field you are typing in (the screen's keys work again) |
| `ctrl+q` | quit (notes are saved first) |

Companion: `c` components (↑↓ walk the rows; the highlighted row's whole reason is shown below the table),
`s` shapes, `p` prints, `b` side by side, `R` reset the method you are on to its TODO (`u` undoes).
Lessons: `/` search every lesson (enter: the next match, then the next lesson that has it), `t` table of
contents, `n` notes.
Runs: `s` start (on the target picked: local, or one of targets.toml), `x` cancel (once: stop after the step and
save; twice: kill), `f` refresh the list, `E` evaluate the highlighted checkpoint (its results show below the
list), `g` the report card.
Chat: typing goes to the message box; `ctrl+x` stop the reply, `ctrl+l` clear, `ctrl+t` train a tiny model
(yours once every check passes), `ctrl+r` re-read the checkpoints (done by itself when a run ends), `ctrl+w`
start/stop the web chat server for the picked checkpoint (its address is shown).

Press `escape` to close this help.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)

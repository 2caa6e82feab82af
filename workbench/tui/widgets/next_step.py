"""The "next step" panel: what the learner should look at now, most urgent first.

Order: regressions (something that passed before now fails, with the diff since it last passed), then an error
in the learner's code (snippet around the line, traceback trimmed to the learner's frames), then the first component
to fix (a method written but wrong) beside the next TODO (qualname, message, file:line, phase, lesson) — the learner
decides which to do first — then "all checks pass". A file with experiments (methods marked
`# workbench: experiment`) gets an EXPERIMENT block: how its methods differ, the held-out losses of both models
side by side, and below the text the two training-loss curves (a plot mounted on the first experiment, so plotext
stays off the start-up path). The same for every learner file: the GPT file, or a track's
file (learner_muon.py, ...), named above its report when the workspace has more than one.
"""

import re
from pathlib import Path

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import ProgressBar, Static

from workbench.check.result import Status, lead_component
from workbench.course.phases import LESSON_FOR, PHASES, phase_of
from workbench.course.workspace import read_learner_file
from workbench.tui.session import Report
from workbench.tui.tracks import LearnerFile

SNIPPET_CONTEXT = 4  # lines either side of the error line
TODO_SNIPPET_MAX = 30  # a TODO's method is shown from its def line when it is at most this long
SYNTAX_THEME = "ansi_dark"  # follows the terminal's own palette
ISSUE_KEY_LINE = "i files this in STATUS.md's issue log"


class NextStep(VerticalScroll):
    """Shows the most useful thing to do next, from the latest check report."""

    report: reactive[Report | None] = reactive(None, always_update=True)
    warmup: reactive[dict | None] = reactive(None)  # the checker's preparation: {"done", "total", "stage"}
    learner: LearnerFile | None = None  # the file the report is of (set before `report`)
    other_files: int = 0  # how many other learner files the workspace has (T shows them)

    def compose(self):
        yield Static("Waiting for the first check of your file…", id="next-step-body")
        yield ProgressBar(show_eta=False, id="warmup-bar")

    def on_mount(self) -> None:
        self.query_one("#warmup-bar").display = False

    def watch_warmup(self, progress: dict | None) -> None:
        if not self.is_mounted:
            return
        bar = self.query_one("#warmup-bar", ProgressBar)
        bar.display = showing = progress is not None and self.report is None
        if showing:
            bar.update(total=progress["total"], progress=progress["done"])
            self.query_one("#next-step-body", Static).update(Text.assemble(
                ("Preparing the checker: ", "bold"), progress.get("stage", ""),
                ("\nOnce per start (the first start also builds the embedded corpus and trains its tokenizer); "
                 "later saves are checked without this wait.", "dim")))

    def watch_report(self, report: Report | None) -> None:
        if not self.is_mounted:
            return
        self.query_one("#warmup-bar").display = False
        self.query_one("#next-step-body", Static).update(render_report(report, self.learner, self.other_files))
        self._show_experiment(report.result.get("experiment") if report else None)
        self.scroll_home(animate=False)

    def _show_experiment(self, run: dict | None) -> None:
        curves = experiment_curves(run)
        plots = self.query("#experiment-plot")
        if not curves:
            plots.set(display=False)
            return
        if not plots:
            from workbench.tui.widgets.loss_plot import LossPlot
            self.mount(LossPlot(title="experiment: training loss, yours and the reference's", id="experiment-plot"))
        plot = self.query_one("#experiment-plot")
        plot.display = True
        plot.curves = curves


def render_report(report: Report | None, learner: LearnerFile | None = None, other_files: int = 0) -> RenderableType:
    parts: list[RenderableType] = []
    if learner is not None and (other_files or not learner.is_model):
        parts.append(Text.assemble((learner.name, "bold"), (f"  {learner.title}", "cyan"),
                                   ("   T: next file" if other_files else "", "dim")))
    if report is None:
        parts.append(Text("Waiting for the first check of your file…", style="dim"))
        return Group(*parts)
    result = report.result
    for reg in report.regressions:
        parts.append(Text.assemble(("REGRESSION  ", "bold white on red"), (reg.qualname, "bold"),
                                   f" passed before and is now {reg.status}"))
        if reg.detail:
            parts.append(Text(f"  {reg.detail}", style="red"))
        if reg.diff:
            parts.append(Text("Your file since it last passed:", style="dim"))
            parts.append(Syntax(_clip(reg.diff, 40), "diff", theme=SYNTAX_THEME, background_color="default"))
        else:
            parts.append(Text("The file is unchanged since it passed: a dependency it calls has changed.", style="dim"))
        parts.append(Text(""))
    error, todo = result.get("error"), result.get("next_todo")
    lead = lead_component(report.components)  # the first, in data-flow order, whose output diverges
    if lead is not None and lead.get("qualname") in {r.qualname for r in report.regressions}:
        lead = None  # already shown above, with its diff
    if error:
        parts.extend(_render_error(error, report.source))
    elif todo:
        if lead is not None:  # a method written but wrong, beside the next one to write: the learner picks
            parts.extend(_render_mismatch(lead, learner, heading="FIRST TO FIX  "))
            parts.append(Text(""))
        parts.extend(_render_todo(todo, report.source, learner))
    else:
        if lead is not None:
            parts.extend(_render_mismatch(lead, learner))
        elif result.get("ok"):
            losses = result.get("losses") or []
            line = Text.assemble(("✔ All checks pass", "bold green"))
            if len(losses) >= 2:
                line.append(f"   loss {losses[0]:.3f} → {losses[-1]:.3f} over {len(losses)} steps", style="green")
            parts.append(line)
            if learner is None or learner.is_model:
                but = " (but for your experiment)" if result.get("experiment") else ""
                parts.append(Text(f"Your GPT matches the reference{but}. Train it for real on the Runs screen (4), "
                                  "then talk to it on the Chat screen (5)."))
            else:
                parts.append(Text(f"Your {learner.name} matches nanochat's {learner.track_file.reference_module}."))
        else:
            parts.append(Text(f"The check stopped at stage '{result.get('stage', '?')}' without a reason.",
                              style="yellow"))
    if result.get("experiment"):
        parts += [Text(""), *_render_experiment(result["experiment"])]
    return Group(*parts)


def experiment_curves(run: dict | None) -> list:
    """The two training-loss curves of an experiment run (workbench/check/result.py's ExperimentRun)."""
    from workbench.tui.widgets.loss_plot import Curve
    curves = []
    for label, key in (("your model", "learner_losses"), ("reference", "reference_losses")):
        losses = (run or {}).get(key) or []
        if losses:
            curves.append(Curve(label, list(range(1, len(losses) + 1)), list(losses)))
    return curves


def _render_experiment(run: dict) -> list[RenderableType]:
    """What the experiment did to training: both models' held-out losses side by side, or why it could not run."""
    names = ", ".join(run.get("qualnames") or [])
    out: list[RenderableType] = [Text.assemble(("EXPERIMENT  ", "bold white on magenta"), (names, "bold"),
                                               ("   differs from the reference on purpose", "dim"))]
    mine, ref = run.get("learner_final"), run.get("reference_final")
    if mine is not None and ref is not None:
        out.append(Text.assemble(f"held-out loss after {run.get('steps')} steps: ", ("yours ", "dim"),
                                 (f"{mine:.4f}", "bold magenta"), ("  ·  reference ", "dim"), (f"{ref:.4f}", "bold"),
                                 (f"   ({mine - ref:+.4f})", "dim")))
    if run.get("reason"):
        out.append(Text(f"your model was not trained: {run['reason']}", style="yellow"))
    if run.get("optimizer"):
        out.append(Text(f"both trained with {run['optimizer']}"
                        + ("" if run.get("same_start", True) else " (from different starting weights)"), style="dim"))
    if run.get("learner_losses") or run.get("reference_losses"):
        out.append(Text("the two training-loss curves are below (3: the Plot screen)", style="dim"))
    return out


def _where_in_course(qualname: str, phase_no: int | None, learner: LearnerFile | None) -> str:
    """Where a method sits in the course: "phase 3 · Forward pass" for the GPT's; nothing for a track file's
    functions (the track's title heads the panel)."""
    if learner is not None and not learner.is_model:
        return ""
    phase_no = phase_no or phase_of(qualname)
    phase = next((p for p in PHASES if p.number == phase_no), None)
    return f"phase {phase_no}" + (f" · {phase.title}" if phase else "")


def _lesson_of(item: dict, learner: LearnerFile | None) -> str | None:
    qualname = item.get("qualname")
    return item.get("lesson") or (learner.lesson_for(qualname) if learner else LESSON_FOR.get(qualname))


def shown_problem(report: Report | None) -> tuple[str, str] | None:
    """(problem, error text) of what the panel shows as going wrong — the learner's error, else a regression, else
    the first component to fix — for STATUS.md's issue log; None when nothing is wrong."""
    if report is None:
        return None
    error = report.result.get("error")
    if error:
        where = f" in {error['qualname']}" if error.get("qualname") else ""
        tb = trim_traceback(error.get("traceback"), error.get("file"))
        return (f"{error.get('type', 'Error')}{where}",
                f"{error.get('type', 'Error')}: {error.get('message', '')}" + (f"\n{tb}" if tb else ""))
    if report.regressions:
        reg = report.regressions[0]
        return f"{reg.qualname} passed before and is now {reg.status}", reg.detail or reg.status
    lead = lead_component(report.components)
    if lead is None:
        return None
    diff = lead.get("max_abs_diff")
    detail = lead.get("detail", "") + (f" (max |Δ| vs the reference: {diff:.3g})" if diff is not None else "")
    return f"{lead.get('qualname', '?')} does not match the reference ({lead.get('status')})", detail


def _render_todo(todo: dict, source: str | None, learner: LearnerFile | None = None) -> list[RenderableType]:
    qualname = todo.get("qualname", "?")
    lesson = _lesson_of(todo, learner)
    hints = "  l opens it here · h hints" if learner is None or learner.is_model else "  l opens it here"
    out: list[RenderableType] = [
        Text.assemble(("NEXT  ", "bold black on yellow"), (qualname, "bold"),
                      (f"   {_where_in_course(qualname, todo.get('phase'), learner)}", "dim")),
        Text(todo.get("message", "")),
        Text.assemble(("at ", "dim"), (f"{_short(todo.get('file'))}:{todo.get('line')}", "underline")),
    ]
    if lesson:
        out.append(Text.assemble(("lesson ", "dim"), (lesson, "cyan"), (hints, "dim")))
    # the whole method from its `def` (the skeleton's docstring is the guide) when it is short enough
    line, def_line = todo.get("line"), todo.get("def_line")
    start = def_line if def_line and line and 0 <= line - def_line <= TODO_SNIPPET_MAX else None
    snippet = _snippet(todo.get("file"), line, source, start=start, after=1)
    if snippet is not None:
        out += [Text(""), snippet]
    return out


def _render_error(error: dict, source: str | None) -> list[RenderableType]:
    where = f"{_short(error.get('file'))}:{error.get('line')}" if error.get("file") else ""
    out: list[RenderableType] = [
        Text.assemble(("ERROR  ", "bold white on red"), (f"{error.get('type', 'Error')}: ", "bold red"),
                      error.get("message", "")),
    ]
    if where:
        out.append(Text.assemble(("at ", "dim"), (where, "underline")))
    out.append(Text(ISSUE_KEY_LINE, style="dim"))
    snippet = _snippet(error.get("file"), error.get("line"), source)
    if snippet is not None:
        out += [Text(""), snippet]
    tb = trim_traceback(error.get("traceback"), error.get("file"))
    if tb:
        out += [Text(""), Text("Traceback (your frames):", style="dim"), Text(tb, style="red")]
    return out


def _render_mismatch(comp: dict, learner: LearnerFile | None = None, heading: str = "") -> list[RenderableType]:
    qualname = comp.get("qualname", "?")
    label = heading or ("ERROR  " if comp.get("status") == Status.ERROR else "MISMATCH  ")
    out: list[RenderableType] = [
        Text.assemble((label, "bold white on dark_orange3"), (qualname, "bold"),
                      (f"   {_where_in_course(qualname, comp.get('phase'), learner)}", "dim")),
        Text(comp.get("detail", "")),
    ]
    if comp.get("max_abs_diff") is not None:
        out.append(Text(f"max |Δ| vs the reference: {comp['max_abs_diff']:.3g}", style="dim"))
    lesson = _lesson_of(comp, learner)
    if lesson:
        model = learner is None or learner.is_model
        hint = "" if heading or not model else "  (h for a hint)"  # beside a TODO, h and l are for the TODO
        out.append(Text.assemble(("lesson ", "dim"), (lesson, "cyan"), (hint, "dim")))
    out.append(Text(ISSUE_KEY_LINE, style="dim"))
    return out


def _snippet(file: str | None, line: int | None, source: str | None, start: int | None = None,
             after: int = SNIPPET_CONTEXT) -> Syntax | None:
    """The code around `line`, from the text the check ran on when the file is the learner's."""
    if not file or not line:
        return None
    code = source
    if code is None or not _is_learner_text(file, source):
        try:
            code = read_learner_file(file)
        except (OSError, ValueError):
            return None
    lines = code.splitlines()
    start, end = start or max(1, line - SNIPPET_CONTEXT), min(len(lines), line + after)
    # only the shown lines are highlighted: lexing the whole file on every result would stall the UI
    return Syntax("\n".join(lines[start - 1:end]), "python", theme=SYNTAX_THEME, line_numbers=True,
                  start_line=start, highlight_lines={line}, background_color="default", word_wrap=True)


def _is_learner_text(file: str, source: str | None) -> bool:
    # the report's source is the learner file's text; other files (the reference, torch) are read from disk
    return source is not None and file.endswith(".py") and not ("site-packages" in file or "/nanochat/" in file)


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


def trim_traceback(traceback: str | list | None, learner_file: str | None) -> str:
    """Keep only the frames in the learner's file, and the exception line itself."""
    if not traceback:
        return ""
    text = traceback if isinstance(traceback, str) else "".join(map(str, traceback))
    lines = text.rstrip("\n").splitlines()
    if not learner_file:
        return "\n".join(lines[-6:])
    learner_name = Path(learner_file).name
    kept, keep_next = [], False
    for line in lines:
        m = _FRAME.match(line)
        if m:
            keep_next = Path(m.group("file")).name == learner_name
            if keep_next:
                kept.append(line.strip())
            continue
        if line.startswith("Traceback") or line.startswith("During handling"):
            keep_next = False
            continue
        if line.startswith((" ", "\t")):
            if keep_next and line.strip() and not set(line.strip()) <= set("^~ "):
                kept.append("    " + line.strip())
            continue
        kept.append(line)  # the exception line(s)
    return "\n".join(kept[-16:])


def _short(file: str | None) -> str:
    if not file:
        return "?"
    try:
        return str(Path(file).relative_to(Path.cwd()))
    except ValueError:
        return str(file)


def _clip(text: str, max_lines: int) -> str:
    lines = text.splitlines()
    if len(lines) <= max_lines:
        return text
    return "\n".join(lines[:max_lines] + [f"… {len(lines) - max_lines} more lines"])

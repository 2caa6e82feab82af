"""The human-readable report of a check result (the dict from workbench/check/client.py), printed with rich.

Order: the verdict line, then what to do next (the error, or the next TODO, or the first mismatch), then every
component with its reason, the shapes of the forward pass, the losses, the training side by side of a file with
experiments (both loss curves drawn with plotext, and the final losses) and the learner's own prints.
"""

import os
import re

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from workbench.check.result import CheckResult, Component, ExperimentRun, Status, lead_component
from workbench.course.phases import phase_title

STATUS_STYLE = {Status.PASS: ("✓", "green"), Status.MISMATCH: ("✗", "bold red"), Status.ERROR: ("!", "bold red"),
                Status.TODO: ("·", "yellow"), Status.SKIPPED: ("-", "dim"),
                Status.NOT_REACHED: ("-", "dim"), Status.EXPERIMENT: ("~", "bold magenta")}


MAX_PRINT_LINE = 300  # characters of one of the learner's printed lines shown (a 5,000-character line is 60 rows)


def _where(d: dict) -> str:
    if not d or not d.get("file"):
        return ""
    return f"{os.path.basename(d['file'])}:{d['line']}" if d.get("line") else os.path.basename(d["file"])


def _shape(s) -> str:
    if s is None:
        return "None"
    if isinstance(s, list) and all(isinstance(x, int) for x in s):
        return "(" + ", ".join(map(str, s)) + ")"
    if isinstance(s, list):
        return "[" + ", ".join(_shape(x) for x in s) + "]"
    return str(s)


def collapse_repeated_blocks(rows: list) -> list:
    """Keep every row of block 0 and only the top row of each later block (they repeat block 0's shapes),
    except rows with NaN/inf, which are always shown."""
    out, hide_below = [], None
    for row in rows:
        depth = row.get("depth", 0)
        if hide_below is not None and depth > hide_below and not row.get("nonfinite"):
            continue
        hide_below = None
        name = row.get("name", "")
        parts = name.split(".")
        if row.get("kind") == "module" and len(parts) == 3 and parts[:2] == ["transformer", "h"] and parts[2] != "0":
            hide_below = depth
        out.append(row)
    return out


def print_report(result: CheckResult, console: Console | None = None, max_shapes: int = 60) -> None:
    console = console or Console()
    print_header(console, result)
    print_next_step(console, result)
    console.print(components_table(result.get("components") or [], console.width))
    shapes = collapse_repeated_blocks(result.get("shapes") or [])
    if shapes:
        console.print(shapes_table(shapes, max_shapes, console.width))
        bad = result.get("first_nonfinite")
        if bad:
            console.print(Text(f"first NaN/inf: {bad['name']} ({bad['type']})", style="bold red"))
    losses = result.get("losses") or []
    if losses:
        line = " → ".join(f"{x:.3f}" for x in losses[:12]) + (" → …" if len(losses) > 12 else "")
        console.print(Text("loss (one batch, before and after each step): ", style="bold") + Text(line))
    if result.get("experiment"):
        print_experiment(console, result["experiment"])
    tail = (result.get("stdout_tail") or "").rstrip()
    if tail:
        lines = tail.splitlines()
        shown = "\n".join(line if len(line) <= MAX_PRINT_LINE else
                          f"{line[:MAX_PRINT_LINE]} … (+{len(line) - MAX_PRINT_LINE:,} characters)"
                          for line in lines[-20:])
        more = f" (last 20 of {len(lines)} kept lines)" if len(lines) > 20 else ""
        console.print(Panel(Text(shown), title=f"your prints{more}", title_align="left", border_style="dim"))


def print_header(console: Console, result: CheckResult) -> None:
    """OK / NOT OK, the file, the stage reached, the count of each status, the time and the model's config."""
    counts = {}
    for c in result.get("components") or []:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    summary = " · ".join(f"{n} {s}" for s, n in counts.items())
    took = (result.get("timings") or {}).get("total_s")
    cfg = result.get("config") or {}
    head = Text()
    head.append("OK " if result.get("ok") else "NOT OK ", style="bold green" if result.get("ok") else "bold red")
    head.append(os.path.basename(result.get("file", "?")), style="bold")
    head.append(f"  stage: {result.get('stage')}" + (f"  ·  {summary}" if summary else ""))
    if took is not None:
        head.append(f"  ·  {took:.2f} s", style="dim")
    console.print(head)
    if cfg:
        console.print(Text(f"depth-{cfg.get('n_layer')} GPT: n_embd {cfg.get('n_embd')}, n_head {cfg.get('n_head')}, "
                           f"n_kv_head {cfg.get('n_kv_head')}, vocab {cfg.get('vocab_size')}, "
                           f"seq {cfg.get('sequence_len')}", style="dim"))


def print_next_step(console: Console, result: CheckResult) -> None:
    """The error, the next TODO, and (when there is no error) the first component to fix."""
    error, todo = result.get("error"), result.get("next_todo")
    if error:
        body = Text(error.get("message", ""), style="bold")
        if error.get("traceback"):
            body.append("\n\n" + error["traceback"].rstrip(), style="dim")
        title = f"{error.get('type', 'Error')}" + (f" at {_where(error)}" if _where(error) else "")
        console.print(Panel(body, title=title, title_align="left", border_style="red"))
    if todo:
        phase = todo.get("phase")
        body = Text()
        body.append(f"{todo.get('qualname')}", style="bold yellow")
        if phase:
            body.append(f"   phase {phase} · {phase_title(phase)}")
        if _where(todo):
            body.append(f"   {_where(todo)}", style="dim")
        body.append(f"\n{todo.get('message', '')}")
        if todo.get("lesson"):
            body.append(f"\nlesson: lessons/{todo['lesson']}", style="cyan")
        console.print(Panel(body, title="next TODO", title_align="left", border_style="yellow"))
    lead = lead_component(result.get("components") or [])
    if lead and not error:
        body = Text(lead["detail"], style="bold")
        if lead.get("lesson"):
            body.append(f"\nlesson: lessons/{lead['lesson']}", style="cyan")
        console.print(Panel(body, title=f"first to fix: {lead['qualname']}", title_align="left", border_style="red"))


def components_table(comps: list[Component], width: int = 120) -> Table:
    """One row per component. The name column takes at most a third of the width (a long name folds onto a
    second line) so the reason keeps room to be read at 80 columns; a TODO row does not repeat its name."""
    table = Table(title="components (in data-flow order)", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("", width=1)
    cap = max(20, width // 3)
    table.add_column("component", overflow="fold", max_width=cap)
    table.add_column("ph", justify="right", style="dim")
    table.add_column("status", no_wrap=True)
    table.add_column("reason", ratio=1)
    for c in comps:
        icon, style = STATUS_STYLE.get(c["status"], ("?", ""))
        detail = (c.get("detail") or "").replace(f"TODO: {c['qualname']}: ", "TODO: ", 1)
        table.add_row(Text(icon, style=style), fold_name(c["qualname"], cap), str(c.get("phase") or ""),
                      Text(c["status"], style=style), escape(detail))
    return table


def fold_name(name: str, width: int) -> str:
    """The name on lines of at most `width` characters, broken after a '.' or '_' where it can be."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[._])", name):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return "\n".join(lines + [line])


def shapes_table(shapes: list[dict], max_shapes: int, width: int = 120) -> Table:
    """Module by module: inputs, output, dtype. Below 100 columns the module column leaves out the type and the
    caller (they are in --json), a nested module shows the last two parts of its name, and the column is cut at a
    third of the width, so the shapes keep room to be read."""
    narrow = width < 100
    t = Table(title="forward pass of your model on the first batch (blocks after the first collapsed)",
              title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("module / function", no_wrap=True, overflow="ellipsis", max_width=width // 3 if narrow else None)
    t.add_column("inputs", ratio=2 if narrow else None)
    t.add_column("output", ratio=1 if narrow else None)
    t.add_column("dtype", no_wrap=True)
    t.add_column("")
    for row in shapes[:max_shapes]:
        name = row["name"]
        if narrow and row.get("kind") != "function" and name.count(".") > 1:
            name = "…" + ".".join(name.split(".")[-2:])  # the indent shows the rest: "…attn.c_q"
        label = Text("  " * min(row.get("depth", 0), 6) + name)
        if row.get("kind") == "function":
            label.append("()", style="bold")
            if not narrow:
                label.append(f"  in {row.get('caller')}", style="dim")
        elif not narrow:
            label.append(f"  {row.get('type')}", style="dim")
        inputs = row.get("inputs")
        inputs = ", ".join(_shape(x) for x in inputs) if isinstance(inputs, list) else _shape(inputs)
        t.add_row(label, inputs, _shape(row.get("output")), row.get("dtype") or "",
                  Text("NaN/inf", style="bold red") if row.get("nonfinite") else "")
    if len(shapes) > max_shapes:
        t.add_row(f"… {len(shapes) - max_shapes} more (see --json)", "", "", "", "")
    return t


def print_experiment(console: Console, run: ExperimentRun) -> None:
    """The learner's model and the reference trained side by side: how, both curves, the final losses."""
    names = ", ".join(run.get("qualnames") or [])
    console.print(Text(f"experiment: {names}", style="bold magenta"))
    start = "from the same weights" if run.get("same_start") else "each from its own init (same seed)"
    console.print(Text(f"your model and the reference trained {run.get('steps')} steps × {run.get('tokens_per_step')} "
                       f"tokens on the same batches, {start}; optimizer: {run.get('optimizer')}", style="dim"))
    mine, ref = run.get("learner_losses") or [], run.get("reference_losses") or []
    if run.get("reason"):
        console.print(Text(f"your model was not trained: {run['reason']}", style="yellow"))
    if ref:
        console.print(loss_curves(mine, ref, min(console.width, 100)))
    yours, theirs = run.get("learner_final"), run.get("reference_final")
    if theirs is not None:
        line = Text("final loss on held-out batches: ", style="bold")
        line.append(f"yours {yours:.3f}" if yours is not None else "yours —")
        line.append(f" · reference {theirs:.3f}")
        if yours is not None:
            line.append(f" (yours {yours - theirs:+.3f})", style="green" if yours <= theirs else "red")
        console.print(line)


def loss_curves(mine: list[float], ref: list[float], width: int):
    """Both training curves in one plot (plotext), or a table of every fifth step where plotext cannot draw."""
    try:
        import plotext as plt
        plt.clear_figure()
        plt.plotsize(max(40, width), 16)
        plt.theme("clear")
        steps = list(range(1, len(ref) + 1))
        plt.plot(steps, ref, label="reference", marker="·")
        if mine:
            plt.plot(steps[:len(mine)], mine, label="yours", marker="+")
        plt.xticks([s for s in steps if s == 1 or s % 5 == 0])
        plt.xlabel("step")
        plt.title("training loss (one fresh batch per step)")
        return Text.from_ansi(plt.build())
    except Exception:  # an old plotext, or a plot it cannot lay out: the numbers instead
        table = Table(title="training loss", title_justify="left", show_edge=False, pad_edge=False)
        for col in ("step", "yours", "reference"):
            table.add_column(col, justify="right")
        for i, value in enumerate(ref):
            if i == 0 or (i + 1) % 5 == 0 or i == len(ref) - 1:
                table.add_row(str(i + 1), f"{mine[i]:.3f}" if i < len(mine) else "—", f"{value:.3f}")
        return table

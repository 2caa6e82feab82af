"""What the three instrument commands share on the caller's side: the model-file and device options, running
the job in its isolated child with a spinner, and saying why it could not (exit 1) or was asked wrongly (exit 2).

Light on purpose: `nanochat-workbench attention --help` imports this, never torch.
"""

import argparse
import os
import sys

from nanochat.common import positive_float, positive_int
from workbench.instruments.isolate import JobKind, JobOutcome, run_job


def add_model_arguments(parser: argparse.ArgumentParser, *, timeout: float, depth_help: str) -> None:
    parser.add_argument("--depth", type=positive_int, default=4, help=depth_help)
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and the data (default 0)")
    parser.add_argument("--timeout", type=positive_float, default=timeout, metavar="S",
                        help=f"seconds before the model's code is stopped (default {timeout:g})")
    parser.add_argument("--memory", type=positive_float, default=None, metavar="GB",
                        help="memory the model's code may allocate on the CPU (default: half the RAM)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def usage_error(command: str, message: str) -> int:
    print(f"nanochat-workbench {command}: error: {message}", file=sys.stderr)
    return 2


def model_file(text: str | None) -> tuple[str | None, str | None]:
    """(absolute path or None for the reference, None) or (None, why the path can't be a model file)."""
    if text is None or text == "reference":
        return None, None
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.isdir(path):
        return None, f"{text} is a directory; pass your GPT file, e.g. {os.path.join(text, 'learner_gpt.py')}"
    if not os.path.isfile(path):
        return None, f"{text} does not exist (create a workspace with `nanochat-workbench init DIR`)"
    if not path.endswith(".py"):
        return None, f"{text} is not a .py file"
    return path, None


def run_instrument(module: str, request: dict, args, what: str) -> JobOutcome:
    """The job in its own process; a spinner on stderr (when it is a terminal) says what is running."""
    status = None
    if not args.json and sys.stderr.isatty():
        from rich.console import Console
        status = Console(stderr=True).status(what)
        status.start()
    try:
        return run_job(module, request, timeout=args.timeout, memory_gb=args.memory)
    finally:
        if status:
            status.stop()


def report_failure(command: str, outcome: JobOutcome, as_json: bool) -> int:
    """Say why the job gave no result: a TODO or an error exit 1, a usage error exit 2."""
    if outcome.kind == JobKind.USAGE:
        return usage_error(command, outcome.error["message"])
    if as_json:
        import json
        print(json.dumps({"kind": outcome.kind, "todo": outcome.todo, "error": outcome.error,
                          "notes": outcome.notes, "output": outcome.output}))
        return 1
    from rich.console import Console

    from workbench.check.report import print_next_step
    console = Console(highlight=False)
    if outcome.kind == JobKind.TODO:
        console.print(f"[yellow]not yet: [bold]{outcome.todo['qualname']}[/bold] is still a TODO[/yellow]")
    print_next_step(console, {"error": outcome.error, "next_todo": outcome.todo, "components": []})
    if outcome.kind == JobKind.ERROR and outcome.output.strip():
        console.print("[dim]output:[/dim]")
        console.print(outcome.output.rstrip()[-2000:], markup=False, style="dim")
    return 1


def present(command: str, outcome: JobOutcome, as_json: bool, render) -> int:
    """The job's result: the failure (exit 1 or 2), its JSON, or the notes and then `render(console, data)`."""
    if outcome.kind != JobKind.OK:
        return report_failure(command, outcome, as_json)
    if as_json:
        import json
        print(json.dumps(outcome.data))
        return 0
    from rich.console import Console
    console = Console(highlight=False)
    for text in outcome.notes:
        console.print(f"[yellow]note:[/yellow] {text}")
    render(console, outcome.data)
    return 0

"""The `nanochat-workbench` command: with no subcommand it opens the TUI; the subcommands are headless.

Each subcommand is a module with `add_arguments(parser)` and `run(args) -> int`, registered by one line in
COMMANDS and imported only when that subcommand is used (`--help` and `init` never load torch).

Exit codes: 0 ok, 1 the command ran and found a problem (a TODO, a mismatch, an error), 2 a usage error.
"""

import argparse
import importlib
import sys
from pathlib import Path

# (name, module with add_arguments(parser) and run(args) -> int, one-line help); one line per subcommand
COMMANDS = [
    ("init", "workbench.course.workspace", "create learner_gpt.py (the skeleton) and STATUS.md in DIR"),
    ("check", "workbench.check.command", "run your GPT file through the depth-4 checks against the reference"),
    ("bpe", "workbench.course.bpe_check", "check your plain-Python BPE trainer (lesson 02's exercise) against rustbpe"),
    ("trace", "workbench.course.trace", "print a forward pass: shapes, statistics, attention, parameters"),
    ("challenge", "workbench.course.challenge_command", "debugging challenges: the reference GPT with one planted bug"),
    ("tokens", "workbench.course.tokens", "show how the tokenizer splits a text: token boundaries, ids, bytes"),
    ("targets", "workbench.remote.targets_command", "add, list, test or remove the GPU boxes and clusters runs go to"),
    ("launch", "workbench.remote.launch_command", "check readiness, then train on a target (ssh, SLURM or local)"),
    ("runs", "workbench.remote.runs_command", "list launched and local runs with their state; cancel, log, wait, pull"),
    ("attention", "workbench.instruments.attention", "show where each attention head looks, for a prompt"),
    ("profile", "workbench.instruments.profile", "time one training step, module by module: ms, memory, FLOPs"),
    ("milestone", "workbench.status.milestone_command", "measure a milestone: overfit, tokenizer, optimizer"),
    ("compare", "workbench.instruments.compare", "train your model and the reference side by side; fill STATUS.md"),
    ("serve", "workbench.serve", "chat with a checkpoint in the browser (the newest chat model unless -i says)"),
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("nanochat-workbench")
    except PackageNotFoundError:
        return "unknown (not installed)"


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in argv (the first word that is not an option or the value of --workspace)."""
    names = {name for name, _, _ in COMMANDS}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workspace":
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in names else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to add its arguments (the others are listed by name)."""
    parser = argparse.ArgumentParser(
        prog="nanochat-workbench",
        description="Write your own GPT, method by method, against nanochat's reference.",
        epilog="With no COMMAND it opens the TUI on the workspace here (--workspace DIR for another). "
               "Headless: `nanochat-workbench init my-gpt`, then `nanochat-workbench check my-gpt/learner_gpt.py`.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--workspace", default=".", metavar="DIR",
                        help="the workspace the TUI opens (default: the current directory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        if name != command:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        description = help_text[0].upper() + help_text[1:] + "."
        module.add_arguments(sub.add_parser(name, help=help_text, description=description))
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors and 0 for --help/--version
        return int(e.code or 0)
    if args.command is None:
        from workbench.tui.main import run_tui  # textual is imported only when the TUI really starts
        return run_tui(Path(args.workspace))
    module = importlib.import_module(dict((name, module) for name, module, _ in COMMANDS)[args.command])
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

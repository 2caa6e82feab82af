"""The `nanochat-workbench` command: with no subcommand it opens the TUI; `init`, `check`, `bpe` and `trace` are
headless.

Exit codes: 0 ok, 1 the command ran and found a problem (a TODO, a mismatch, an error), 2 a usage error.
Nothing heavy is imported here: `--help` and `init` never load torch; each subcommand imports its module when run.
"""

import argparse
import sys
from pathlib import Path


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("nanochat-workbench")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
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

    init = sub.add_parser("init", help="create learner_gpt.py (the skeleton) and STATUS.md in DIR",
                          description="Create a workspace: the GPT skeleton to fill in and STATUS.md to track it. "
                                      "Existing files are never overwritten.")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="workspace directory (default: here)")
    init.add_argument("--name", default="learner_gpt.py", help="file name of your GPT (default: learner_gpt.py)")

    check = sub.add_parser("check", help="run your GPT file through the depth-4 checks against the reference",
                           description="Check FILE against the reference GPT, component by component.")
    from workbench import check_command  # light: the runner imports torch only in its worker process
    check_command.add_arguments(check)

    bpe = sub.add_parser("bpe", help="check your plain-Python BPE trainer (lesson 02's exercise) against rustbpe",
                         description="Run train_bpe(text, vocab_size, pattern) from FILE and compare its merges with "
                                     "rustbpe's on the same text.")
    from workbench import bpe_check  # light: rustbpe and the learner's code are loaded only when it runs
    bpe_check.add_arguments(bpe)

    trace = sub.add_parser("trace", help="print a forward pass: shapes, statistics, attention, parameters",
                           description="Trace one forward pass of a small GPT from FILE (default: the reference).")
    from workbench import trace as trace_module  # light: it imports torch only when it runs
    trace_module.add_arguments(trace)
    return parser


def _run_init(args) -> int:
    from workbench.workspace import UsageError, WorkspaceError, init_workspace, next_steps
    try:
        ws = init_workspace(args.dir, args.name)
    except UsageError as e:
        print(f"nanochat-workbench init: error: {e}", file=sys.stderr)
        return 2
    except WorkspaceError as e:
        print(f"nanochat-workbench init: {e}", file=sys.stderr)
        return 1
    print(next_steps(ws))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors and 0 for --help/--version
        return int(e.code or 0)
    if args.command is None:
        from workbench.tui_main import run_tui  # textual is imported only when the TUI really starts
        return run_tui(Path(args.workspace))
    try:
        if args.command == "init":
            return _run_init(args)
        if args.command == "check":
            from workbench import check_command
            return int(check_command.run(args))
        if args.command == "bpe":
            from workbench import bpe_check
            return bpe_check.run(args)
        if args.command == "trace":
            from workbench import trace as trace_module
            return trace_module.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Entry point of the TUI: `run_tui(workspace)` is what `nanochat-workbench` with no subcommand calls.

Also runnable on its own: `python -m workbench.tui.main [--workspace DIR]`.
"""

import argparse
import sys
from pathlib import Path


def run_tui(workspace: Path, learner_file: Path | None = None) -> int:
    """Open the workbench on `workspace` (offering to create one there if it has none). Returns an exit code."""
    workspace = Path(workspace).expanduser()
    if workspace.exists() and not workspace.is_dir():
        print(f"nanochat-workbench: {workspace} is a file; pass the workspace directory (--workspace DIR)",
              file=sys.stderr)
        return 2
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        print("nanochat-workbench: the TUI needs a terminal; for scripts use `nanochat-workbench check FILE`",
              file=sys.stderr)
        return 2
    from workbench.tui.app import WorkbenchApp  # textual is imported only when the TUI really starts

    app = WorkbenchApp(workspace, learner_file=learner_file)
    app.run()
    return app.return_code or 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.tui.main", description="Open the workbench TUI.")
    parser.add_argument("--workspace", default=".", help="the learner's workspace directory (default: here)")
    args = parser.parse_args(argv)
    return run_tui(Path(args.workspace))


if __name__ == "__main__":
    sys.exit(main())

"""`nanochat-workbench challenge`: debugging challenges — a reference module with one planted bug to find and fix.

    nanochat-workbench challenge --list              the catalogue, with what you have solved
    nanochat-workbench challenge NAME                write challenge_NAME.py into the workspace
    nanochat-workbench challenge --random            the same, for a random unsolved challenge
    nanochat-workbench challenge --check NAME        check your fix: the symptom (which method, what differs), or
                                                     "solved" — then recorded in STATUS.md's learning log
    nanochat-workbench challenge --hint NAME         the next, stronger hint (the last one shows the fix)

`nanochat-workbench check challenge_NAME.py` works on the file too (the full report, which may name the mistake).
The catalogue (the GPT's challenges and each track's) and the learner's progress are in
workbench/course/challenges.py; a track's challenge is checked by its track's checks (workbench/tracks/runner.py).
"""

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workbench.check.result import Status
from workbench.course import challenges as cat
from workbench.course.workspace import STATUS_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="the challenge (see --list)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the challenges and which ones you solved")
    what.add_argument("--random", action="store_true", help="write a random unsolved challenge")
    what.add_argument("--hint", action="store_true", help="show the next hint for NAME (each call goes one further)")
    what.add_argument("--check", action="store_true",
                      help="check challenge_NAME.py: the symptom, or solved (recorded in STATUS.md)")
    parser.add_argument("--force", action="store_true", help="overwrite challenge_NAME.py if it exists")
    parser.add_argument("--workspace", dest="challenge_workspace", default=None, metavar="DIR",
                        help="the workspace (default: the current directory)")


def usage_error(message: str) -> int:
    print(f"nanochat-workbench challenge: error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    workspace = Path(args.challenge_workspace or getattr(args, "workspace", None) or ".")
    if not workspace.is_dir():
        return usage_error(f"{workspace} is not a directory (create a workspace with `nanochat-workbench init DIR`)")
    if args.list or (args.name is None and not args.random):
        if args.name is None and not args.list and (args.hint or args.check):
            return usage_error("--hint and --check need a challenge NAME")
        return list_challenges(workspace)
    if args.random:
        if args.name is not None:
            return usage_error("give either NAME or --random, not both")
        return write_challenge(workspace, cat.pick_random(cat.load_progress(workspace)), args.force)
    try:
        challenge = cat.by_name(args.name)
    except KeyError as e:
        return usage_error(e.args[0])
    if args.hint:
        return show_hint(workspace, challenge)
    if args.check:
        return check_challenge(workspace, challenge)
    return write_challenge(workspace, challenge, args.force)


def list_challenges(workspace: Path) -> int:
    progress = cat.load_progress(workspace)
    table = Table(title="debugging challenges", title_justify="left")
    for column in ("name", "file", "symptom", "hints", "solved"):
        table.add_column(column)
    every = cat.all_challenges()
    for c in every:
        record = progress.get(c.name) or {}
        solved = record.get("solved")
        table.add_row(c.name, c.source.rsplit("/", 1)[-1], escape(c.title),
                      str(record.get("hints", 0)) if record else "",
                      f"[green]✓ {escape(str(solved)[:10])}[/green]" if solved else "")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"{len(every)} challenges; start one with `nanochat-workbench challenge NAME` "
                  f"(or --random)")
    return 0


def write_challenge(workspace: Path, challenge: cat.Challenge, force: bool) -> int:
    path = workspace / cat.file_name(challenge)
    if path.exists() and not force:
        return usage_error(f"{path} exists (your work on it is kept); --force starts it again from scratch")
    try:
        text = cat.plant(challenge)
    except cat.ChallengeDrift as e:
        print(f"nanochat-workbench challenge: workbench bug: {e}", file=sys.stderr)
        return 1
    cat.atomic_write(path, text)
    progress = cat.load_progress(workspace)
    cat.entry(progress, challenge.name)["written"] = cat.now()
    cat.save_progress(workspace, progress)
    print(f"wrote {path}: {challenge.title}.")
    print(f"A line of nanochat's {challenge.source} has been changed. Find it with:")
    print(f"  nanochat-workbench challenge --check {challenge.name}   (the symptom)")
    if challenge.source == cat.DEFAULT_SOURCE:
        print(f"  nanochat-workbench trace {path}   (look inside a forward pass)")
    print(f"  nanochat-workbench challenge --hint {challenge.name}    (when you are stuck)")
    return 0


def show_hint(workspace: Path, challenge: cat.Challenge) -> int:
    progress = cat.load_progress(workspace)
    record = cat.entry(progress, challenge.name)
    ladder = cat.hint_ladder(challenge)
    record["hints"] = min(int(record.get("hints") or 0) + 1, len(ladder))
    cat.save_progress(workspace, progress)
    console = Console(highlight=False)
    for i, text in enumerate(ladder[:record["hints"]], 1):
        console.print(f"[bold]hint {i}/{len(ladder)}[/bold] {escape(text)}")
    if record["hints"] < len(ladder):
        console.print("[dim](run it again for a stronger hint)[/dim]")
    return 0


SYMPTOM_WORDS = {Status.MISMATCH: "does not behave like the reference's",
                 Status.ERROR: "raises an error", Status.TODO: "is not written yet"}


def symptom(result: dict) -> str:
    """What is wrong, from the result's fields: the method and what differs — never the named mistake (the fix)."""
    error = result.get("error") or {}
    if error.get("qualname"):
        return f"{error['qualname']} raised {error.get('type')}: {error.get('message', '')}"
    lead = next((c for c in result.get("components") or [] if c.get("qualname") == result.get("lead")), None)
    if lead is None:
        if error:
            return f"the check stopped: {error.get('type')}: {error.get('message', '')}"
        todo = result.get("next_todo") or {}
        return f"{todo.get('qualname') or 'the file'} is not written yet: {todo.get('message', '')}"
    numbers = []
    if lead.get("verdict"):
        numbers.append(str(lead["verdict"]))
    if lead.get("max_abs_diff") is not None:
        numbers.append(f"max |Δ| {lead['max_abs_diff']:.3g}")
    what = SYMPTOM_WORDS.get(lead.get("status"), str(lead.get("status")))
    how = f"; {', '.join(numbers)}" if numbers else ""
    return f"{lead['qualname']} {what} (checked with {lead.get('check') or 'its own check'}{how})"


def run_check(path: Path) -> dict:
    """The check of a challenge's file: its track's checks for a track module, the GPT check otherwise."""
    from workbench.tracks.recognise import recognise
    if recognise(path).track_file is not None:
        from workbench.tracks.runner import check_track_file
        return check_track_file(str(path))
    from workbench.check.client import check_file
    return check_file(path)


def check_challenge(workspace: Path, challenge: cat.Challenge) -> int:
    from workbench.check.client import RunnerError
    path = workspace / cat.file_name(challenge)
    if not path.is_file():
        return usage_error(f"{path} does not exist; start it with `nanochat-workbench challenge {challenge.name}`")
    console = Console(highlight=False)
    try:
        result = run_check(path)
    except (RunnerError, OSError) as e:
        print(f"nanochat-workbench challenge: the checker could not run: {e}", file=sys.stderr)
        return 1
    progress = cat.load_progress(workspace)
    record = cat.entry(progress, challenge.name)
    if not result.get("ok"):
        console.print(f"[red]not yet:[/red] {escape(symptom(result))}")
        if record["hints"] >= 2:  # past the second hint the checker's own diagnosis is no spoiler any more
            lead = next((c for c in result.get("components") or [] if c.get("qualname") == result.get("lead")), {})
            if lead.get("detail"):
                console.print(f"[dim]the checker says:[/dim] {escape(lead['detail'])}")
        else:
            console.print(f"[dim]stuck? nanochat-workbench challenge --hint {challenge.name}[/dim]")
        return 1
    first = not record.get("solved")
    if first:
        record["solved"] = cat.now()
        cat.save_progress(workspace, progress)
    console.print(f"[green]solved:[/green] {path.name} passes every check ({challenge.title.lower()}).")
    if first:
        record_in_status(workspace, challenge, record["hints"], console)
    return 0


def record_in_status(workspace: Path, challenge: cat.Challenge, hints: int, console: Console) -> None:
    """A dated line in STATUS.md's learning log, through the status document's own API."""
    from workbench.status.doc import StatusDoc, StatusDocError
    status = workspace / STATUS_NAME
    if not status.is_file():
        console.print(f"[dim](no {STATUS_NAME} in {escape(str(workspace))}: recorded in "
                      f"{cat.PROGRESS_FILE} only)[/dim]")
        return
    try:
        doc = StatusDoc.load(status)
        doc.add_log_entry(f"Solved challenge `{challenge.name}` ({challenge.title.lower()}): the bug was in "
                          f"`{challenge.method}`; {hints} hint(s) used.")
        doc.save()
    except (StatusDocError, OSError) as e:
        console.print(f"[yellow]could not record it in {STATUS_NAME}:[/yellow] {escape(str(e))}")
        return
    console.print(f"recorded in {STATUS_NAME}'s learning log.")

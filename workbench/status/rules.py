"""The rules that turn one check result into STATUS.md edits: ticks, milestones and the method-checks table.

A component that passes ticks its item; one that fails (`mismatch`, `error`) or is a TODO clears a workbench
tick of its item (several components may share a qualname: all must pass); `skipped` changes nothing, and so does
`experiment`: a method the learner marked as an experiment differs from the reference on purpose, so its box is
neither ticked nor unticked (and it counts as matching for "Matches reference"). The stage where the run stopped
decides the stage milestones of the GPT; a track file's result (`result["track"]`) reaches none of them. A result
that stopped at import (a syntax error while the learner types) changes nothing: that is a file being edited, not
a component that regressed. Every component's row goes into the method-checks table (method, status, largest
difference, what the check found). The text edits themselves are workbench/status/doc.py's.
"""

from pathlib import Path

from workbench.check.result import CheckResult, Component, Stage, Status, stage_index
from workbench.status.doc import Changes, StatusDoc, update_status

UNDONE = (Status.MISMATCH, Status.ERROR, Status.TODO)  # clears the workbench's tick of the method
# stage milestones: reached once the check got past the stage
STAGE_MILESTONES = (("model_builds", Stage.CONSTRUCT), ("forward_runs", Stage.FORWARD),
                    ("backward_runs", Stage.BACKWARD), ("training_step_completes", Stage.OPTIMIZE))


def apply_check(doc: StatusDoc, result: CheckResult) -> Changes:
    """Bring `doc` in line with one check result (staged edits: `doc.save()` writes them)."""
    if result.get("stage") == Stage.IMPORT:
        return Changes()
    status_by_name: dict[str, list[str]] = {}
    rows = []
    for comp in result.get("components") or []:
        name = comp.get("qualname")
        if not name:
            continue
        status_by_name.setdefault(name, []).append(comp.get("status"))
        rows.append(check_row(comp))
    experiments = {n for n, st in status_by_name.items() if Status.EXPERIMENT in st}
    passing = {n for n, st in status_by_name.items() if all(s == Status.PASS for s in st)}
    failing = {n for n, st in status_by_name.items() if any(s in UNDONE for s in st)} - experiments
    changes = doc.tick(passing, failing)
    if not result.get("track"):  # the stage milestones are the GPT's: a track file's check reaches none of them
        reached, unreached = milestones(result, status_by_name)
        milestone_changes = doc.set_milestones(reached, unreached)
        changes.ticked |= milestone_changes.ticked
        changes.unticked |= milestone_changes.unticked
        changes.kept |= milestone_changes.kept
    if rows:
        doc.update_check_table(rows)
    return changes


def check_row(comp: Component) -> list[str]:
    """One row of the method-checks table: method, status, largest difference, what the check found."""
    diff = comp.get("max_abs_diff")
    return [f"`{comp['qualname']}`", str(comp.get("status") or ""),
            f"{diff:.2g}" if isinstance(diff, (int, float)) else "", comp.get("detail") or ""]


def milestones(result: CheckResult, status_by_name: dict[str, list[str]]) -> tuple[set, set]:
    """The milestone keys this result reaches and those it shows are not (or no longer) reached."""
    reached, unreached = set(), set()
    stage = stage_index(result.get("stage"))
    if stage is None:
        return reached, unreached
    done_upto = stage_index(Stage.DONE) + 1 if result.get("ok") else stage
    for milestone, needs in STAGE_MILESTONES:
        (reached if stage_index(needs) < done_upto else unreached).add(milestone)
    losses = result.get("losses") or []
    if len(losses) >= 2:
        (reached if losses[-1] < losses[0] else unreached).add("loss_decreases")
    statuses = [s for st in status_by_name.values() for s in st]
    if statuses and Status.EXPERIMENT not in statuses:  # an experiment differs on purpose: it neither claims
        # "matches the reference" nor takes back a match reached before it
        all_pass = all(s in (Status.PASS, Status.SKIPPED) for s in statuses) and Status.PASS in statuses
        (reached if all_pass and result.get("ok") else unreached).add("matches_reference")
    gen = status_by_name.get("GPT.generate", [])
    if any(s in UNDONE for s in gen) or result.get("stage") == Stage.GENERATE:
        unreached.add("generation_works")
    elif result.get("stage") == Stage.DONE and gen and all(s == Status.PASS for s in gen):
        reached.add("generation_works")
    return reached, unreached


def tick_passed(status_path: Path, result: CheckResult) -> str | None:
    """Apply one result to the STATUS.md at `status_path` and save it if anything changed; None, or what went
    wrong (one line for the learner)."""
    return update_status(status_path, lambda doc: apply_check(doc, result))

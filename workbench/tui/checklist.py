"""The TUI's view of STATUS.md: the checklist the widget draws, and ticks written after a check.

Reading and writing STATUS.md goes through workbench.status.doc (never edited here by hand); this module turns
it into what the checklist widget draws, and turns failures into one-line messages with the fix.
"""

from pathlib import Path

from workbench.course.phases import PHASES
from workbench.status.doc import StatusDoc, StatusDocError
from workbench.tui.widgets.checklist import ChecklistData, ChecklistPhase


def load_checklist(status_path: Path) -> tuple[ChecklistData, str | None]:
    """The checklist from STATUS.md, or the plain phase list and the reason it could not be read."""
    try:
        doc = StatusDoc.load(status_path)
    except StatusDocError as e:
        return _plain_checklist(), f"{e}. The checklist shows the phases without your ticks."
    phases = [ChecklistPhase(f"{p.number} {_short_title(p.title)}", [(i.qualname, i.ticked) for i in p.items])
              for p in doc.phases if p.items]
    if not phases:
        return _plain_checklist(), (f"{status_path} has no phase sections with method boxes "
                                    f"(lines like “- [ ] `GPT.forward`”); showing the plain phase list.")
    milestones = [(m.label, m.done) for m in doc.milestones]
    return ChecklistData(phases, milestones), None


def _plain_checklist() -> ChecklistData:
    return ChecklistData([ChecklistPhase(f"{p.number} {p.title}", [(m, False) for m in p.methods]) for p in PHASES])


def _short_title(title: str) -> str:
    # "Phase 3: forward pass" -> "Forward pass"
    head, _, rest = title.partition(":")
    short = rest.strip() or head.strip()
    return short[:1].upper() + short[1:]  # "Optimizer: AdamW and Muon" keeps its capitals

"""Milestones with numbers: what the learner's own code reached, measured and dated in STATUS.md.

    Milestone.OVERFIT      the learner's GPT overfits a fixed set of sentences to loss < 0.1, on the CPU
    Milestone.TOKENIZER    the learner's BPE trainer (lesson 02) reaches >= 4 characters per token on held-out text
    Milestone.OPTIMIZER    the learner's optimizer follows the reference's loss curve within a tolerance
    Milestone.FIRST_CHAT   a first chat with a model of the learner's own (the TUI's chat records it)

The first three are measured by `nanochat-workbench milestone overfit|tokenizer|optimizer`
(workbench/status/milestone_command.py); the chat calls `record_milestone(workspace, Milestone.FIRST_CHAT,
detail)`. Each becomes one line of the STATUS.md milestones section, through workbench/status/doc.py's safe merge:

    - [x] **Overfits a fixed set of sentences** — loss < 0.1 on the CPU · reached 2026-11-30 17:40: ... <!-- wb -->
    - [ ] **Tokenizer compresses** — ≥ 4 characters per token on held-out text · not yet (2026-11-30 17:52): ...

A milestone once reached keeps its line and its date; a measurement that falls short only updates a line that
was not reached yet.
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from workbench.status.doc import StatusDoc, StatusDocError, milestone_key, status_file, update_status

OVERFIT_LOSS = 0.1  # the guide's target: the training loss on the fixed sentences below this
TOKENIZER_CHARS_PER_TOKEN = 4.0  # the guide's target: characters per token on held-out text, at least this


class Milestone(str, Enum):
    OVERFIT = "overfit"
    TOKENIZER = "tokenizer"
    OPTIMIZER = "optimizer"
    FIRST_CHAT = "first_chat"


@dataclass(frozen=True)
class Target:
    label: str  # the bold label of its STATUS.md line (its identity there)
    goal: str  # what reaching it takes, in words


TARGETS: dict[Milestone, Target] = {
    Milestone.OVERFIT: Target("Overfits a fixed set of sentences", f"loss < {OVERFIT_LOSS:g} on the CPU"),
    Milestone.TOKENIZER: Target("Tokenizer compresses",
                                f"≥ {TOKENIZER_CHARS_PER_TOKEN:g} characters per token on held-out text"),
    Milestone.OPTIMIZER: Target("Optimizer matches the reference", "the same loss curve, within a tolerance"),
    Milestone.FIRST_CHAT: Target("First chat", "a model of your own answered you"),
}


@dataclass(frozen=True)
class Measurement:
    milestone: Milestone
    reached: bool
    detail: str  # the figures, in words: "loss 0.083 after 212 steps, 32 sentences (learner_gpt.py)"
    when: datetime = field(default_factory=datetime.now)

    def line_text(self) -> str:
        """What follows the bold label on its STATUS.md line."""
        stamp = self.when.strftime("%Y-%m-%d %H:%M")
        state = f"reached {stamp}" if self.reached else f"not yet ({stamp})"
        detail = " ".join(self.detail.split())
        return f"{TARGETS[self.milestone].goal} · {state}" + (f": {detail}" if detail else "")


def record(workspace, measurement: Measurement) -> str | None:
    """Write `measurement` into the STATUS.md of `workspace` (the folder, or the file itself).

    Returns None, or why nothing was written, in one line (no STATUS.md, read-only, ...).
    """
    target = TARGETS[measurement.milestone]
    return update_status(workspace, lambda doc: doc.put_milestone(target.label, measurement.line_text(),
                                                                  measurement.reached))


def record_milestone(workspace, milestone: Milestone, detail: str, when: datetime | None = None) -> str | None:
    """Mark `milestone` reached now (or `when`) with `detail` (e.g. "base · d4 · step 50, learner_gpt.py").

    For events outside the measurements, like the first chat: `record_milestone(ws, Milestone.FIRST_CHAT, detail)`.
    Returns None, or why nothing was written, in one line. A milestone already reached keeps its first date.
    """
    return record(workspace, Measurement(Milestone(milestone), True, detail, when or datetime.now()))


def recorded_line(workspace, milestone: Milestone) -> str | None:
    """The milestone's line as STATUS.md holds it now (None when it has none or cannot be read)."""
    try:
        doc = StatusDoc.load(status_file(workspace))
    except StatusDocError:
        return None
    key = milestone_key(TARGETS[milestone].label)
    found = next((m for m in doc.milestones if m.key == key), None)
    return doc.text.splitlines()[found.line] if found else None

"""The learner files of a workspace as the TUI sees them: the GPT file and every file `init --track` writes
(learner_adamw.py, learner_muon.py, learner_dataloader.py, ...), the track each belongs to, and the order `T`
steps through them.

The GPT file is checked by the warm worker (workbench/check/client.py), every other file by the track runner
(workbench/tracks/runner.py); both return the same CheckResult. Only the tracks' light spec modules are read
here (no torch), so the watcher knows every name at start-up, before any of those files exists.
"""

from dataclasses import dataclass
from pathlib import Path

from workbench.tracks.base import Track, TrackFile, available_track_specs

MODEL_TITLE = "Model: your GPT"


@dataclass(frozen=True)
class LearnerFile:
    name: str  # the file's name in the workspace: "learner_gpt.py", "learner_muon.py"
    track: Track
    title: str  # the track's title, shown above the file's next step
    track_file: TrackFile | None = None  # None for the GPT file (checked by workbench/check/)

    @property
    def is_model(self) -> bool:
        return self.track_file is None

    def lesson_for(self, qualname: str | None) -> str | None:
        """The lesson that teaches one of this file's functions (the GPT's come from workbench/course/phases)."""
        if qualname is None:
            return None
        if self.track_file is None:
            from workbench.course.phases import LESSON_FOR
            return LESSON_FOR.get(qualname)
        return next((e.lesson for e in self.track_file.exercises if e.qualname == qualname), None)


def learner_files(gpt_name: str) -> list[LearnerFile]:
    """Every learner file a workspace can have: the GPT file first, then each track's files in spec order."""
    files = [LearnerFile(gpt_name, Track.MODEL, MODEL_TITLE)]
    for spec in available_track_specs():
        files += [LearnerFile(tf.learner_file, spec.track, spec.title, tf) for tf in spec.files
                  if tf.learner_file != gpt_name]
    return files


def present(workspace: Path, files: list[LearnerFile]) -> list[LearnerFile]:
    """The files that exist in the workspace (the GPT file is always kept: it is the one the TUI opens on)."""
    return [f for f in files if f.is_model or (workspace / f.name).is_file()]


def newest(workspace: Path, files: list[LearnerFile]) -> LearnerFile:
    """The file saved last (the one the companion opens on); the GPT file when none can be read."""
    def saved_at(f: LearnerFile) -> float:
        try:
            return (workspace / f.name).stat().st_mtime
        except OSError:
            return float("-inf")
    return max(present(workspace, files), key=saved_at)


def following(files: list[LearnerFile], current: str) -> LearnerFile:
    """The file after `current` in `files`, round to the first."""
    names = [f.name for f in files]
    at = names.index(current) if current in names else -1
    return files[(at + 1) % len(files)]

"""The contract every track follows: which reference module it is made from, which functions the learner writes.

A track file's skeleton is generated from its reference module (workbench/tracks/skeleton.py): the functions and
methods named in `exercises` keep their signature and docstring and raise `NotImplementedError("TODO: ...")`,
everything else is copied as it is. A verbatim copy of the reference module therefore passes the track's check.

The model track is the GPT of `learner_gpt.py`, checked by workbench/check/; the others are checked by
workbench/tracks/runner.py, which runs the track's `probes.check(learner, reference)` in a child process and
returns the same `CheckResult` dict (workbench/check/result.py) the GPT check returns.

This module imports nothing heavy: `init`, `--list` and the TUI read it at start-up.
"""

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from enum import Enum


class Track(str, Enum):
    MODEL = "model"
    OPTIMIZER = "optimizer"
    DATA = "data"
    TRAINING = "training"
    ENGINE = "engine"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Exercise:
    """One function or method the learner writes."""
    qualname: str  # "zeropower_via_newtonschulz5", "KVCache.insert_kv"
    check: str  # what its row checks, shown in the Components table ("orthogonalises like the reference")
    lesson: str | None = None  # lessons/<file>.md that teaches it
    todo: str | None = None  # what to write, for the skeleton's `raise NotImplementedError("TODO: <qualname>: <todo>")`
    notes: str | None = None  # extra lines for the skeleton's docstring (shapes, hints), plain text


@dataclass(frozen=True)
class TrackFile:
    """One file of a track: made from one reference module, checked against it, a drop-in for it."""
    learner_file: str  # the file `init --track` writes: "learner_muon.py"
    reference_module: str  # the module the skeleton is made from and checked against: "nanochat.muon"
    exercises: tuple[Exercise, ...]  # in the order a learner should write them (the next TODO is the first)
    probes_module: str  # "workbench.tracks.optimizer.probes_muon": defines check(learner, reference) -> list[Component]

    def reference_path(self) -> Path:
        """The reference module's source file, found without importing it (importing it would load torch)."""
        return Path(importlib.util.find_spec(self.reference_module).origin)

    def exercise(self, qualname: str) -> Exercise:
        return next(e for e in self.exercises if e.qualname == qualname)


@dataclass(frozen=True)
class TrackSpec:
    track: Track
    title: str  # "Optimizer: AdamW and Muon"
    files: tuple[TrackFile, ...]  # one per reference module the track covers


# The tracks beyond the model, in the order `init --track all` lays them out. Each entry names the module whose
# `SPEC` (a TrackSpec) describes the track; importing it must stay light (no torch).
TRACK_SPEC_MODULES: dict[Track, str] = {
    Track.OPTIMIZER: "workbench.tracks.optimizer.spec",
    Track.DATA: "workbench.tracks.data.spec",
    Track.TRAINING: "workbench.tracks.training.spec",
    Track.ENGINE: "workbench.tracks.engine.spec",
}


def track_spec(track: Track) -> TrackSpec:
    """The spec of a track beyond the model (KeyError for Track.MODEL: that one is learner_gpt.py)."""
    return importlib.import_module(TRACK_SPEC_MODULES[track]).SPEC


def track_specs() -> list[TrackSpec]:
    return [track_spec(t) for t in TRACK_SPEC_MODULES]


def available_spec_modules() -> list:
    """The tracks' spec modules that exist (a track still being written is left out, not an error)."""
    modules = []
    for name in TRACK_SPEC_MODULES.values():
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if not (e.name and name.startswith(e.name)):
                raise  # the spec exists but imports something missing: a real bug
    return modules


def available_track_specs() -> list[TrackSpec]:
    """The specs of the tracks whose spec module exists."""
    return [module.SPEC for module in available_spec_modules()]


def find_track_file(track: Track, learner_file: str | None = None,
                    reference_module: str | None = None) -> TrackFile | None:
    """The file of `track` with that learner file name or reference module (None when there is none)."""
    try:
        spec = track_spec(track)
    except (KeyError, ModuleNotFoundError):
        return None
    for tf in spec.files:
        if tf.learner_file == learner_file or tf.reference_module == reference_module:
            return tf
    return None

"""The learner's path through the model: the phases, the methods in each, and the lesson that teaches each method.

One table that the skeleton, the runner's "next TODO", STATUS.md and the lessons all agree on.
"""

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    number: int
    title: str
    methods: tuple[str, ...]


PHASES: tuple[Phase, ...] = (
    Phase(1, "Model construction", (
        "GPT.__init__", "GPT._precompute_rotary_embeddings", "Block.__init__",
        "CausalSelfAttention.__init__", "MLP.__init__",
    )),
    Phase(2, "Weight initialisation", ("GPT.init_weights", "GPT._init_weights")),
    Phase(3, "Forward pass", (
        "norm", "apply_rotary_emb", "CausalSelfAttention.forward", "MLP.forward", "Block.forward", "GPT.forward",
    )),
    Phase(4, "Optimisation", ("GPT.setup_optimizers", "GPT.get_device", "GPT.estimate_flops")),
    Phase(5, "Generation", ("GPT.generate",)),
)

# qualname -> lesson file (in lessons/) that teaches it
LESSON_FOR: dict[str, str] = {
    "GPT.__init__": "03-embeddings-and-config.md",
    "GPT._precompute_rotary_embeddings": "06-rotary-embeddings.md",
    "Block.__init__": "04-the-block.md",
    "CausalSelfAttention.__init__": "07-attention.md",
    "MLP.__init__": "08-mlp.md",
    "GPT.init_weights": "10-initialisation.md",
    "GPT._init_weights": "10-initialisation.md",
    "norm": "05-rmsnorm.md",
    "apply_rotary_emb": "06-rotary-embeddings.md",
    "CausalSelfAttention.forward": "07-attention.md",
    "MLP.forward": "08-mlp.md",
    "Block.forward": "04-the-block.md",
    "GPT.forward": "09-logits-and-loss.md",
    "GPT.setup_optimizers": "11-optimisers.md",
    "GPT.get_device": "12-training-loop.md",
    "GPT.estimate_flops": "12-training-loop.md",
    "GPT.generate": "13-generation.md",
}

ALL_METHODS: tuple[str, ...] = tuple(m for phase in PHASES for m in phase.methods)


def phase_of(qualname: str) -> int | None:
    """The phase number a method (of the GPT, or an exercise of a track) belongs to, or None for other names."""
    for phase in PHASES:
        if qualname in phase.methods:
            return phase.number
    for phase in track_phases():
        if qualname in phase.methods:
            return phase.number
    return None


# ---- the tracks beyond the model: one phase each, numbered after the model's ------------------------------------

def track_phase_number(track) -> int:
    """The phase number of a track beyond the model (optimizer 6, data 7, training 8, engine 9)."""
    from workbench.tracks.base import TRACK_SPEC_MODULES
    return len(PHASES) + 1 + list(TRACK_SPEC_MODULES).index(track)


@functools.lru_cache(maxsize=1)
def track_phases() -> tuple[Phase, ...]:
    """A phase per track whose spec is there, its exercises in the order the learner writes them."""
    from workbench.tracks.base import available_track_specs
    return tuple(Phase(track_phase_number(spec.track), spec.title,
                       tuple(e.qualname for tf in spec.files for e in tf.exercises))
                 for spec in available_track_specs())


def known_qualnames() -> frozenset[str]:
    """Every name STATUS.md may have a box for: the GPT's methods and every track's exercises."""
    return frozenset(ALL_METHODS).union(*(phase.methods for phase in track_phases()))


def phase_title(number: int | None) -> str:
    """The title of a phase of the model or of a track ('' for anything else)."""
    for phase in PHASES + (track_phases() if number and number > len(PHASES) else ()):
        if phase.number == number:
            return phase.title
    return ""

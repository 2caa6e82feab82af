"""The engine track's check: each function of the learner's engine against nanochat/engine.py, on its own.

`check(learner, reference)` returns one Component row per exercise (workbench/tracks/outcome.py makes them), in
the order a learner writes them. Each probe calls the learner's function on the same inputs as the reference's
(float64 tensors for the cache, the same seeds for sampling) and names the usual mistakes when they differ:
probe_cache.py (get_pos, insert_kv, prefill), probe_sampling.py (sample_next_token), probe_generate.py
(Engine._advance and Engine.generate, with the reference's parts around the learner's function, so a bug is
blamed where it is).
"""

from types import ModuleType

from workbench.check.result import Component, Status
from workbench.tracks.engine import probe_cache, probe_generate, probe_sampling
from workbench.tracks.engine.spec import EXERCISES
from workbench.tracks.outcome import row

PROBES = {
    "KVCache.get_pos": probe_cache.get_pos,
    "KVCache.insert_kv": probe_cache.insert_kv,
    "KVCache.prefill": probe_cache.prefill,
    "sample_next_token": probe_sampling.sample_next_token,
    "Engine._advance": probe_generate.advance,
    "Engine.generate": probe_generate.generate,
}


def own_function(learner: ModuleType, reference: ModuleType, qualname: str):
    """The learner's function for `qualname`, or None when it is missing or is the reference's own object."""
    obj = learner
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if getattr(obj, "__module__", None) == learner.__name__ else None


def check(learner: ModuleType, reference: ModuleType) -> list[Component]:
    rows = []
    for exercise in EXERCISES:
        if own_function(learner, reference, exercise.qualname) is None:
            rows.append(row(exercise, Status.ERROR, f"{exercise.qualname} is not defined in your file (or is "
                                                    f"nanochat's reference, not yours)"))
            continue
        try:
            rows.append(PROBES[exercise.qualname](exercise, learner, reference))
        except Exception as e:  # the learner's function returned something the probe cannot read
            rows.append(row(exercise, Status.ERROR, f"its result could not be compared with the reference's: "
                                                    f"{type(e).__name__}: {e}"))
    return rows

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


def check(learner: ModuleType, reference: ModuleType) -> list[Component]:
    """One row per exercise. A function missing from the learner's file, or not written there, is the track
    child's to report (workbench/tracks/child.py replaces those rows); here it is only kept from stopping the rest."""
    rows = []
    for exercise in EXERCISES:
        try:
            rows.append(PROBES[exercise.qualname](exercise, learner, reference))
        except Exception as e:  # a missing function, or a result of a kind the probe cannot read
            rows.append(row(exercise, Status.ERROR, f"the check could not read what it returned "
                                                    f"({type(e).__name__}: {e})"))
    return rows

"""The worker's own look at what the check's child sent: the verdict rests on numbers the worker computed.

The learner's code runs in the child, in the same process as the code that reports on it, so it can reach the
result channel (through `gc`, say) and write events of its own: "loss at init 8.3", "training 8.3 → 0.5". Two
defences, both in the worker:

- `screen(events, token)`: every event the check sends carries the run's token (made by the worker for this
  run); events without it were written into the pipe by other code and are dropped. The check sends exactly
  one `pipeline` and one `end` event and each experiment once; a second one means someone sent through the
  check's own channel object. Either way the run is reported as tampered with and cannot pass.
- `recomputed_losses(ref, tensors)`: the child sends the learner's weights after init and after the last
  training step; the worker runs the reference model with those weights on its own batch. "Loss at init" and
  "training" are judged on these losses, not on the numbers the child reported.
"""

import torch

SINGLE_KINDS = ("pipeline", "experiment_run", "end")  # the check sends each of these once


def screen(events: list[dict], token: str) -> tuple[list[dict], list[str]]:
    """(the events the worker accepts, what was wrong with the others: [] when nothing was)."""
    kept, problems, seen_kinds, seen_experiments = [], [], set(), set()
    foreign = 0
    for event in events:
        if event.get("token") != token:
            foreign += 1
            continue
        kind = event.get("kind")
        if "end" in seen_kinds:
            problems.append(f"a {kind!r} event after the end")
            continue
        if kind in SINGLE_KINDS and kind in seen_kinds:
            problems.append(f"a second {kind!r} event")
            continue
        if kind == "experiment" and event.get("qualname") in seen_experiments:
            problems.append(f"a second result for {event.get('qualname')}")
            continue
        seen_kinds.add(kind)
        if kind == "experiment":
            seen_experiments.add(event.get("qualname"))
        kept.append(event)
    if foreign:
        problems.insert(0, f"{foreign} event(s) without the check's token")
    return kept, problems


def tampered_error(problems: list[str]) -> dict:
    """The result's error for a run whose result channel was written to by the learner's code."""
    return {"type": "Tampered", "message": "the check's result channel was written to by code other than the "
            f"check ({'; '.join(problems[:3])}): those events were ignored, and a run like this cannot pass",
            "file": None, "line": None, "qualname": None, "traceback": ""}


def weight_tensors(init: dict | None, final: dict | None) -> dict:
    """The tensors the child sends with its pipeline event: "init:NAME" and "final:NAME"."""
    tensors = {}
    for prefix, state in (("init", init), ("final", final)):
        for name, t in (state or {}).items():
            tensors[f"{prefix}:{name}"] = t
    return tensors


def _loss(ref, weights: dict) -> float | None:
    expected = ref.model.state_dict()
    if not weights or set(weights) != set(expected):
        return None
    if any(tuple(weights[k].shape) != tuple(v.shape) for k, v in expected.items()):
        return None
    try:  # the buffers it does not name (rotary cos/sin) stay the reference's
        with torch.no_grad():
            weights = {k: w.to(expected[k].dtype) for k, w in weights.items()}
            loss = torch.func.functional_call(ref.model, weights, (ref.inputs, ref.targets))
        return float(loss)
    except Exception:  # tensors that are not plain weights (a subclass, a meta tensor): not verifiable
        return None


def recomputed_losses(ref, tensors: dict) -> dict:
    """{"init": loss, "final": loss}: the reference model's loss on the check's batch with the learner's weights
    after init and after the last training step; a value is None when those weights were not sent or do not
    have the reference's parameter names and shapes."""
    out = {}
    for prefix in ("init", "final"):
        weights = {k.split(":", 1)[1]: v for k, v in tensors.items() if k.startswith(prefix + ":")}
        out[prefix] = _loss(ref, weights)
    return out


def trusted_losses(claimed: list, recomputed: dict) -> list[float]:
    """The loss curve to show: the child's own list when its first and last values are the ones the worker
    recomputed (within 0.1%), otherwise only the recomputed values; [] when nothing could be recomputed."""
    pairs = [(claimed[i] if claimed else None, recomputed.get(k)) for i, k in ((0, "init"), (-1, "final"))]
    pairs = [(c, r) for c, r in pairs if r is not None]
    if not pairs:
        return []
    if all(c is not None and abs(float(c) - r) <= 1e-3 * max(1.0, abs(r)) for c, r in pairs):
        return [float(x) for x in claimed]
    return [r for _, r in pairs]

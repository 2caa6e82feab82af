"""Debugging challenges: a reference module with one planted bug, for the learner to find with the check's help.

Each challenge is a small, exact source edit of its reference module (`source`: nanochat/gpt.py unless it says
otherwise), applied when the challenge is written (never a stored copy): every (find, replace) pair must match the
reference exactly once, so a change to the reference that the catalogue has not followed raises `ChallengeDrift`
(and fails the tests) instead of handing out a bug-free file. The GPT's challenges are here; each track's spec
module may add its own in an optional `CHALLENGES` tuple (all_challenges() collects them). A track challenge's
file starts with the track's header, so `check` and `challenge --check` route it to the track's checks.

The learner's side of a challenge lives in the workspace:
- `challenge_<name>.py`, the planted copy they fix;
- `.workbench/challenges.json`, how many hints they have asked for and when they solved it;
- a dated line in STATUS.md's learning log once the file passes the check.

This module imports nothing heavy (no torch): `nanochat-workbench challenge --list` stays instant.
"""

import dataclasses
import importlib.util
import json
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nanochat.fsutil import atomic_write, read_regular_file

PROGRESS_FILE = Path(".workbench") / "challenges.json"
DEFAULT_SOURCE = "nanochat/gpt.py"
MAX_PROGRESS_BYTES = 1 << 20


class ChallengeDrift(Exception):
    """The reference changed under a challenge: one of its edits no longer matches exactly once."""


@dataclass(frozen=True)
class Challenge:
    name: str  # the slug: `challenge <name>`, challenge_<name>.py
    title: str  # what kind of bug, without giving away where the fix is
    method: str  # the qualname the check blames first (its `lead`)
    edits: tuple[tuple[str, str], ...]  # (find, replace) pairs, each matching the reference exactly once
    hints: tuple[str, str]  # rung 1: the idea to look at; rung 2: where, more precisely (rung 3 shows the fix)
    source: str = DEFAULT_SOURCE  # the reference module's file, from the repository root: "nanochat/muon.py"

    @property
    def module(self) -> str:
        """The reference's module name: "nanochat.muon"."""
        return self.source[:-3].replace("/", ".")


_SDPA = "            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=enable_gqa)"

CHALLENGES: tuple[Challenge, ...] = (
    Challenge(
        "peeking", "The model does better on training text than it has any right to", "CausalSelfAttention.forward",
        ((_SDPA, _SDPA.replace("is_causal=True", "is_causal=False")),),
        ("A language model predicts token t+1 from tokens 0..t only. What stops position 3 from reading token 7?",
         "Look at the call that computes attention when there is no cache: which positions may each query see?")),
    Challenge(
        "spin", "Positions are encoded, but not the reference's way", "apply_rotary_emb",
        (("y1 = x1 * cos + x2 * sin", "y1 = x1 * cos - x2 * sin"),
         ("y2 = x1 * (-sin) + x2 * cos", "y2 = x1 * sin + x2 * cos")),
        ("A rotation by an angle has a direction. Both directions encode position, but only one matches the "
         "reference's weights.",
         "In apply_rotary_emb, compare the signs of the four sin/cos terms with a 2-D rotation matrix by −θ.")),
    Challenge(
        "swapped-halves", "Rotary embeddings scramble the channels", "apply_rotary_emb",
        (("out = torch.cat([y1, y2], 3)", "out = torch.cat([y2, y1], 3)"),),
        ("Rotary embeddings rotate pairs of channels in place: channel i should come out where it went in.",
         "In apply_rotary_emb, look at how the two rotated halves are put back together.")),
    Challenge(
        "soft-norm", "Activations are not quite unit-RMS after the norm", "norm",
        (("    return F.rms_norm(x, (x.size(-1),))", "    return F.rms_norm(x, (x.size(-1),), eps=1.0)"),),
        ("RMSNorm divides by sqrt(mean(x²) + ε). How big should ε be next to mean(x²) ≈ 1?",
         "Read the arguments of the call in norm() one by one.")),
    Challenge(
        "raw-embeddings", "The first block sees embeddings at the wrong scale", "GPT.forward",
        (("        x = norm(x)\n        for block", "        for block"),),
        ("nanochat does one thing to the token embeddings before the first block that GPT-2 did not.",
         "In GPT.forward, list every step between the embedding lookup and the loop over the blocks.")),
    Challenge(
        "fast-spin", "The rotary tables turn at the wrong speeds", "GPT._precompute_rotary_embeddings",
        (("inv_freq = 1.0 / (base ** (channel_range / head_dim))",
          "inv_freq = 1.0 / (base ** (channel_range / (head_dim // 2)))"),),
        ("Each pair of channels turns at its own frequency, from 1 radian per position down to about 1/base.",
         "In GPT._precompute_rotary_embeddings, check the exponent: what range should it span over the pairs?")),
    Challenge(
        "flat-mlp", "The MLP is less non-linear than it should be", "MLP.forward",
        (("x = F.relu(x).square()", "x = F.relu(x)"),),
        ("nanochat's MLP activation is not the plain one from the textbooks.",
         "In MLP.forward, compare the activation with the one the reference's module docstring names.")),
    Challenge(
        "runaway-logits", "Logits can grow without bound", "GPT.forward",
        (("        logits = softcap * torch.tanh(logits / softcap)\n", ""),),
        ("nanochat keeps every logit inside (−15, 15). What function squashes smoothly into a range?",
         "In GPT.forward, look at what happens to the logits between lm_head and the loss.")),
    Challenge(
        "loud-queries", "Attention scores are bigger than the reference's", "CausalSelfAttention.forward",
        (("        q, k = norm(q), norm(k)\n", ""),),
        ("The reference does something to queries and keys after rotary and before the dot product.",
         "In CausalSelfAttention.forward, list every step between the projections and the attention call.")),
    Challenge(
        "no-shortcut", "The MLP's input is lost on the way out of the block", "Block.forward",
        (("x = x + self.mlp(norm(x))", "x = self.mlp(norm(x))"),),
        ("A pre-norm block adds each sub-layer's output to a stream that carries the input through.",
         "In Block.forward, compare the attention line with the MLP line.")),
    Challenge(
        "shared-heads", "Query heads read the wrong key/value heads", "CausalSelfAttention.forward",
        ((_SDPA, "            if enable_gqa:\n"
                 "                k = k.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
                 "                v = v.repeat(1, self.n_head // self.n_kv_head, 1, 1)\n"
                 "            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)"),),
        ("With grouped-query attention, query heads 0..g-1 share key/value head 0, the next g share head 1, ...",
         "In CausalSelfAttention.forward, check the order in which the key/value heads are copied: "
         "repeat and repeat_interleave differ.")),
    Challenge(
        "tiny-init", "The weights start at the wrong scale", "GPT._init_weights",
        (("std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))", "std = 0.02"),),
        ("GPT-2 used one fixed standard deviation for every matrix; nanochat's depends on each matrix's shape.",
         "In GPT._init_weights, look at how std is computed for nn.Linear.")),
    Challenge(
        "loud-start", "The model does not start as the identity on the residual", "GPT.init_weights",
        (("        torch.nn.init.zeros_(self.lm_head.weight)\n", ""),),
        ("At step 0 the reference's prediction is uniform over the vocabulary. Which weights make that so?",
         "In GPT.init_weights, list every matrix that is zeroed after the general initialisation.")),
    Challenge(
        "wide-rates", "The AdamW learning rates are off for this width", "GPT.setup_optimizers",
        (("dmodel_lr_scale = (model_dim / 768) ** -0.5", "dmodel_lr_scale = (model_dim / 768) ** 0.5"),),
        ("nanochat tuned its AdamW learning rates at width 768; a narrower model needs larger ones, not smaller.",
         "In GPT.setup_optimizers, look at the factor the AdamW learning rates are multiplied by.")),
    Challenge(
        "frozen-clock", "Generation with a KV cache forgets where it is", "KV-cache decoding",
        (("T0 = 0 if kv_cache is None else kv_cache.get_pos()", "T0 = 0"),),
        ("Rotary angles depend on each token's absolute position. With a cache, the new token is not at "
         "position 0.",
         "In GPT.forward, look at where the rotary tables are sliced: which position does the slice start at?")),
    Challenge(
        "double-shift", "The loss trains the model to predict two tokens ahead", "GPT.forward",
        (("        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,",
          "        logits, targets = logits[:, :-1].contiguous(), targets[:, 1:]\n"
          "        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,"),),
        ("The dataloader already hands the model targets that are the inputs moved by one.",
         "In GPT.forward, look at what is done to logits and targets just before cross_entropy.")),
    Challenge(
        "merged-wrong", "The heads are merged in the wrong layout", "CausalSelfAttention.forward",
        (("        y = y.transpose(1, 2).contiguous().view(B, T, -1)", "        y = y.contiguous().view(B, T, -1)"),),
        ("Attention runs on (B, H, T, D). What layout must y be in before its last two axes become C = H·D?",
         "In CausalSelfAttention.forward, follow y's shape from the attention call to c_proj.")),
    Challenge(
        "cold-sampling", "Sampling always picks the same token", "GPT.generate",
        (("            if temperature > 0:\n                probs", "            if False:\n                probs"),),
        ("With temperature 1 and a seed, generation should sample from the softmax, not take its maximum.",
         "In GPT.generate, follow which branch picks next_ids when temperature > 0.")),
    Challenge(
        "flop-count", "The FLOPs estimate is too high", "GPT.estimate_flops",
        (("return 6 * (nparams - nparams_embedding) + 12 * l * h * q * t", "return 6 * nparams + 12 * l * h * q * t"),),
        ("An embedding lookup is an index, not a matrix multiply.",
         "In GPT.estimate_flops, look at which parameters the 6-FLOPs-per-parameter term counts.")),
)


def all_challenges() -> tuple[Challenge, ...]:
    """The GPT's challenges, then each track's (from its spec module's optional CHALLENGES). A track challenge
    that does not name its source gets its track's reference module when the track has one file."""
    from workbench.tracks.base import available_spec_modules
    found = list(CHALLENGES)
    for module in available_spec_modules():
        files = module.SPEC.files
        for challenge in getattr(module, "CHALLENGES", ()):
            if challenge.source == DEFAULT_SOURCE and len(files) == 1:
                challenge = dataclasses.replace(challenge, source=files[0].reference_module.replace(".", "/") + ".py")
            found.append(challenge)
    return tuple(found)


def by_name(name: str) -> Challenge:
    """The challenge called `name`; KeyError (with the known names) otherwise."""
    every = all_challenges()
    for challenge in every:
        if challenge.name == name:
            return challenge
    raise KeyError(f"no challenge called {name!r}; `challenge --list` shows them: "
                   + ", ".join(c.name for c in every))


def reference_path(challenge: Challenge | None = None) -> Path:
    """The challenge's reference module (nanochat/gpt.py by default), located without importing it (importing it
    would load torch)."""
    spec = importlib.util.find_spec(challenge.module if challenge else DEFAULT_SOURCE[:-3].replace("/", "."))
    return Path(spec.origin)


def track_header(challenge: Challenge) -> str:
    """The track header of a challenge whose reference is a track's module ('' for the GPT's)."""
    from workbench.tracks.base import available_track_specs
    from workbench.tracks.recognise import header_line
    for spec in available_track_specs():
        for tf in spec.files:
            if tf.reference_module == challenge.module:
                return header_line(spec.track, tf.reference_module) + "\n"
    return ""


def plant(challenge: Challenge, reference: str | None = None) -> str:
    """The reference's text with the challenge's edits applied; ChallengeDrift if any edit does not fit."""
    text = reference_path(challenge).read_text() if reference is None else reference
    for find, replace in challenge.edits:
        count = text.count(find)
        if count != 1:
            raise ChallengeDrift(f"challenge {challenge.name!r}: the reference contains {find!r} {count} times "
                                 f"(expected exactly once); {challenge.source} changed, update the catalogue")
        text = text.replace(find, replace, 1)
    what = "reference GPT" if challenge.source == DEFAULT_SOURCE else challenge.source
    header = (f'{track_header(challenge)}"""Challenge {challenge.name}: {challenge.title}.\n\n'
              f"One bug has been planted in this copy of nanochat's {what}. Find it and fix it:\n"
              f"    nanochat-workbench challenge --check {challenge.name}     (what is wrong, not where)\n"
              f"    nanochat-workbench challenge --hint {challenge.name}      (progressively stronger hints)\n"
              f'"""\n\n')
    return header + text


def file_name(challenge: Challenge) -> str:
    return f"challenge_{challenge.name}.py"


def hint_ladder(challenge: Challenge) -> list[str]:
    """The hints, weakest first: the idea, where to look, then the reference's own line(s)."""
    answer = "\n".join(f"the reference has:\n{find.rstrip()}" for find, _ in challenge.edits)
    return [challenge.hints[0], challenge.hints[1], f"In {challenge.method}, {answer}"]


# ---- the learner's progress: .workbench/challenges.json -----------------------------------------------------------


def load_progress(workspace: Path) -> dict:
    """{name: {"written": iso, "hints": n, "solved": iso or None}}; empty when there is none (or it is unreadable)."""
    try:
        data = json.loads(read_regular_file(Path(workspace) / PROGRESS_FILE, MAX_PROGRESS_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_progress(workspace: Path, progress: dict) -> None:
    path = Path(workspace) / PROGRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(progress, indent=1, sort_keys=True) + "\n")


def entry(progress: dict, name: str) -> dict:
    """The progress record of one challenge (created, with no hints and not solved, when missing)."""
    record = progress.get(name)
    if not isinstance(record, dict):
        record = progress[name] = {}
    record.setdefault("hints", 0)
    record.setdefault("solved", None)
    return record


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def pick_random(progress: dict, rng: random.Random | None = None) -> Challenge:
    """A random challenge, among the unsolved ones while any is left."""
    every = all_challenges()
    unsolved = [c for c in every if not (progress.get(c.name) or {}).get("solved")]
    return (rng or random.Random()).choice(unsolved or list(every))

"""The engine track: what `learner_engine.py` asks for, and the bugs its challenges plant in nanochat/engine.py.

The learner writes the KV cache (`KVCache.get_pos`, `insert_kv`, `prefill`), `sample_next_token` (temperature,
top-k, the generator), and the Engine's decoding loop (`Engine._advance` for stop tokens and the calculator,
`Engine.generate` for prefill-then-decode with the cache). Everything else of nanochat/engine.py is copied as it
is. workbench/tracks/engine/probes.py checks each against the reference on the same inputs and seeds.

No torch here: `init`, `challenge --list` and the TUI read this module at start-up.
"""

from workbench.course.challenges import Challenge
from workbench.tracks.base import Exercise, Track, TrackFile, TrackSpec

LESSON = "21-kv-cache-and-sampling.md"

EXERCISES = (
    Exercise("KVCache.get_pos", "reports the cache position", LESSON,
             todo="return how many positions are cached (self.pos)"),
    Exercise("KVCache.insert_kv", "stores keys/values per layer, advances once after the last layer", LESSON,
             todo="write k and v at positions pos..pos+T of this layer, return everything cached so far",
             notes="k, v: (B, H_kv, T, D). self.kv: (n_layer, 2, B, H_kv, T_max, D), made by self._ensure_room(k, "
                   "pos + T), which also grows it. Every layer of one forward writes the same positions, so pos "
                   "moves on only after the last layer (layer_idx == num_layers - 1) has inserted."),
    Exercise("KVCache.prefill", "copies a batch-1 cache into every row", LESSON,
             todo="copy other's first other.pos positions (every layer, keys and values) into every row",
             notes="other.kv: (n_layer, 2, 1, H_kv, T, D) broadcasts over this cache's B rows; the position "
                   "continues from other.pos."),
    Exercise("sample_next_token", "greedy at temperature 0, temperature and top-k, draws from the rng", LESSON,
             todo="argmax at temperature 0; else keep the top_k largest logits, softmax(logits / temperature), "
                  "draw one token per row with the generator",
             notes="logits: (B, vocab) -> LongTensor (B, 1). rng is one torch.Generator for all rows, or a list "
                   "with one per row (torch.multinomial(..., generator=g))."),
    Exercise("Engine._advance", "stops at <|assistant_end|>/<|bos|>, runs the calculator", LESSON,
             todo="finish the row at <|assistant_end|> or <|bos|>; collect <|python_start|>…<|python_end|> and "
                  "queue the calculator's answer in row.forced",
             notes="The answer is forced as <|output_start|>, its tokens (self.tokenizer.encode), <|output_end|>; "
                   "safe_eval(text) returns None for an expression it refuses, and then nothing is forced."),
    Exercise("Engine.generate", "the reference's tokens and cache, prefill once then one token a step", LESSON,
             todo="run the prompt once (batch 1), prefill a num_samples-row cache from it, then sample, force "
                  "and feed back one column per step until every row is done",
             notes="Yields (column, masks): one token per row, mask 1 if sampled, 0 if forced. Row i draws with "
                   "its own torch.Generator seeded seed + i."),
)

SPEC = TrackSpec(
    track=Track.ENGINE,
    title="Engine: the KV cache, sampling and generation",
    files=(TrackFile(learner_file="learner_engine.py", reference_module="nanochat.engine", exercises=EXERCISES,
                     probes_module="workbench.tracks.engine.probes"),),
)

_ADVANCE_POS = ("        if layer_idx == self.num_layers - 1:\n            self.pos = t1\n")
_TOP_K = "        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]"

CHALLENGES: tuple[Challenge, ...] = (
    Challenge(
        "stuck-cache", "Cached generation repeats itself where uncached decoding does not", "KVCache.insert_kv",
        ((_ADVANCE_POS, ""),),
        ("After one forward through every layer, where should the next token's keys go, and at which rotary "
         "position?",
         "In KVCache.insert_kv, follow self.pos: when, if ever, does it move?")),
    Challenge(
        "early-advance", "Every layer after the first attends to the wrong keys", "KVCache.insert_kv",
        ((_ADVANCE_POS, "        if layer_idx == 0:\n            self.pos = t1\n"),),
        ("All layers of one forward write the same positions. When may the position move on?",
         "In KVCache.insert_kv, check which layer's insert moves the position.")),
    Challenge(
        "one-layer-prefill", "Sampling several answers goes wrong from the second layer on", "KVCache.prefill",
        (("        self.kv[:, :, :, :, :other.pos] = other.kv[:, :, :, :, :other.pos]",
          "        self.kv[:1, :, :, :, :other.pos] = other.kv[:1, :, :, :, :other.pos]"),),
        ("prefill starts a bigger cache from the prompt's cache. What does the prompt's cache hold, per layer?",
         "In KVCache.prefill, read the slice of the copy dimension by dimension.")),
    Challenge(
        "greedy-always", "The chat gives the same answer at every temperature", "sample_next_token",
        (("    if temperature == 0.0:\n", "    if temperature >= 0.0:\n"),),
        ("Temperature 0 means greedy. What should happen above 0?",
         "In sample_next_token, look at the condition that picks the argmax.")),
    Challenge(
        "short-list", "Top-k sampling never picks the k-th likeliest token", "sample_next_token",
        ((_TOP_K, _TOP_K.replace("min(top_k,", "min(top_k - 1,")),),
        ("With top_k = 2, how many tokens can be drawn?",
         "In sample_next_token, count how many logits survive the mask.")),
    Challenge(
        "endless-reply", "Answers run on past their end", "Engine._advance",
        (('        if token in (s["assistant_end"], s["bos"]):\n            row.done = True\n        elif',
          "        if"),),
        ("Which tokens end a row's answer, and who notices them?",
         "In Engine._advance, look at what happens when the model emits <|assistant_end|>.")),
)

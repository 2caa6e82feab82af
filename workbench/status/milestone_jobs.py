"""The measurements behind the numeric milestones, run in the isolated child of workbench/instruments/isolate.py
(the learner's code never runs in the caller): `job(request)` with request["milestone"] "overfit" or "optimizer".

- overfit: the learner's GPT (loaded as base_train's --model loads it, nanochat/model_source.py), built at
  request["depth"] and initialised by its own init_weights, trains on a fixed set of sentences from the embedded
  corpus, the whole set every step (full batch), with its own setup_optimizers at constant learning rates, until
  the loss is below request["target"] or request["max_steps"] steps have run. The loss of each step is that of
  the whole set before the step's update.
- optimizer: the reference GPT trains request["steps"] steps on the same batches twice, from the same weights:
  once with the reference's optimizers, once with those rebuilt from the learner's Muon/AdamW file (the way
  base_train's --optimizer rebuilds them, nanochat/learner_code.py); both loss curves come back.

Progress lines ("step 40 loss 2.3147") are appended to request["progress"] as they happen, for the caller to show.
All torch imports are inside the functions: the caller imports this module's name only.
"""

import math
import re

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
PLAIN_SENTENCE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'\"()\-]+[.!?]$")  # prose: no code, no markup
MIN_WORDS, MAX_WORDS = 8, 40
ROW_TOKENS = 128  # tokens per row of the overfit batch


def fixed_sentences(count: int) -> list[str]:
    """The first `count` plain prose sentences of the embedded corpus's train split, in its fixed order."""
    from nanochat import embedded_corpus
    found: list[str] = []
    for doc in embedded_corpus.split("train"):
        for sentence in SENTENCE_END.split(" ".join(doc.split())):
            if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and PLAIN_SENTENCE.match(sentence):
                if sentence not in found:
                    found.append(sentence)
                    if len(found) == count:
                        return found
    return found


def job(request: dict) -> dict:
    if request["milestone"] == "overfit":
        return overfit(request)
    if request["milestone"] == "optimizer":
        return optimizer_curves(request)
    raise ValueError(f"unknown milestone job {request['milestone']!r}")


def _progress(request: dict, text: str) -> None:
    path = request.get("progress")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def overfit_batch(sentences: list[str], tokenizer, row_tokens: int = ROW_TOKENS):
    """(inputs, targets) holding every sentence, each after a BOS, as rows of `row_tokens`; the stream wraps
    around to its start to fill the last row, so every target is a token of the fixed set."""
    import torch
    bos = tokenizer.get_bos_token_id()
    stream = []
    for ids in tokenizer.encode(sentences):
        stream += [bos] + ids
    rows = math.ceil(len(stream) / (row_tokens + 1))
    wrapped = (stream * (rows * (row_tokens + 1) // len(stream) + 1))[:rows * (row_tokens + 1)]
    data = torch.tensor(wrapped, dtype=torch.long).view(rows, row_tokens + 1)
    return data[:, :-1].contiguous(), data[:, 1:].contiguous(), len(stream)


def overfit(request: dict) -> dict:
    """Train until the loss on the fixed set is below request["target"] or request["max_steps"] ran out."""
    import torch

    from nanochat.tokenizer import get_tokenizer
    from workbench.instruments.isolate import note
    from workbench.instruments.models import fresh_model

    torch.manual_seed(request.get("seed", 0))
    tokenizer = get_tokenizer()
    sentences = fixed_sentences(request["sentences"])
    if len(sentences) < request["sentences"]:
        note(request, f"the embedded corpus has {len(sentences)} plain sentences: using all of them")
    inputs, targets, tokens = overfit_batch(sentences, tokenizer)
    _, _, model = fresh_model(request, tokenizer.get_vocab_size(), ROW_TOKENS, "cpu")
    optimizers = model.setup_optimizers()
    model.train()
    losses = []
    for step in range(1, request["max_steps"] + 1):
        loss = model(inputs, targets)
        losses.append(float(loss.detach()))
        if step == 1 or step % request["every"] == 0:
            _progress(request, f"step {step:4d}  loss {losses[-1]:.4f}")
        if not math.isfinite(losses[-1]) or losses[-1] < request["target"]:
            break
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
    _progress(request, f"step {len(losses):4d}  loss {losses[-1]:.4f}")
    return {"losses": losses, "steps": len(losses), "final_loss": losses[-1], "sentences": len(sentences),
            "tokens": tokens, "reached": math.isfinite(losses[-1]) and losses[-1] < request["target"]}


def optimizer_curves(request: dict) -> dict:
    """The reference GPT's loss per step with the reference's optimizers and with the learner's."""
    from nanochat.learner_code import LearnerCode
    from nanochat.model_source import ADAMW, MUON, load_learner, top_level_names
    from workbench.instruments.isolate import UsageError

    path = request["file"]
    names = top_level_names(path)
    code = LearnerCode(training=None, dataloader=None)
    for kind, attr in ((MUON, "muon"), (ADAMW, "adamw")):
        if kind.defined_by(names):
            setattr(code, attr, load_learner(path, kind))
    if code.muon is None and code.adamw is None:
        load_learner(path, MUON)  # says, in one line, what the file lacks
    reference, _ = _train_reference(request, None, "reference")
    learner, uses = _train_reference(request, code, "yours")
    if not uses:
        raise UsageError(f"{path} defines no optimizer a one-process run uses (Muon, or AdamW beside DistAdamW): "
                         f"nothing of yours would run")
    return {"reference": reference, "learner": learner, "steps": request["steps"], "uses": uses}


def _train_reference(request: dict, code, who: str) -> tuple[list[float], list[str]]:
    """The reference GPT, same seed and batches each time, trained request["steps"] steps with the reference's
    optimizers (`code` None) or with those rebuilt from the learner's modules in `code`. Returns (the loss per
    step, the names of the learner's optimizer classes that ran)."""
    import torch

    from nanochat.dataloader import tokenizing_distributed_data_loader
    from nanochat.learner_code import with_learner_optimizers
    from nanochat.tokenizer import get_tokenizer
    from workbench.instruments.models import fresh_model

    tokenizer = get_tokenizer()
    _, _, model = fresh_model({"depth": request["depth"], "seed": request.get("seed", 0)},
                              tokenizer.get_vocab_size(), request["seq"], "cpu")
    optimizers = model.setup_optimizers()
    if code is not None:
        optimizers = with_learner_optimizers(optimizers, code, False)
    learners = {m.__name__ for m in (code.muon, code.adamw) if m is not None} if code is not None else set()
    uses = [type(opt).__name__ for opt in optimizers if type(opt).__module__ in learners]
    loader = tokenizing_distributed_data_loader(request["batch"], request["seq"], "train", device="cpu",
                                                source="embedded")
    torch.manual_seed(request.get("seed", 0))
    model.train()
    losses = []
    for step in range(request["steps"]):
        inputs, targets = next(loader)
        loss = model(inputs, targets)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % request["every"] == 0 or step == request["steps"] - 1:
            _progress(request, f"{who:9s} step {step + 1:3d}  loss {losses[-1]:.4f}")
    return losses, uses

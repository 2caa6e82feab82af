"""The conversation mixtures each post-training stage trains on, in two kinds.

`full` is nanochat's recipe on downloaded data (`python -m nanochat.tasks.download ...`):
- mid-training: SmolTalk, MMLU auxiliary train, GSM8K train (calculator calls), the identity conversations
  (twice), SimpleSpelling and SpellingBee; validated on SmolTalk test, MMLU test, GSM8K test;
- SFT: ARC-Easy and ARC-Challenge train, GSM8K train, 10K SmolTalk conversations, identity, a little spelling;
  validated on SmolTalk test;
- RL: GSM8K train, evaluated on GSM8K test.

`offline` needs no download (the cpu preset): generated GSM8K-style word problems and multiple-choice
arithmetic (nanochat.posttrain.offline_tasks), the identity conversations shipped with the package and the
spelling tasks, whose word list comes with a package.
"""

from nanochat.posttrain.offline_tasks import IDENTITY_FILE, SyntheticChoice, SyntheticGSM8K
from nanochat.tasks.common import MissingDataError, Task, TaskMixture

KINDS = ("full", "offline")
SPLITS = ("train", "val")


def _identity():
    from nanochat.tasks.customjson import CustomJSON

    return CustomJSON(IDENTITY_FILE)


def _spelling(simple, bee, split):
    from nanochat.tasks.spelling import SimpleSpelling, SpellingBee

    split = "train" if split == "train" else "test"
    return [SimpleSpelling(size=simple, split=split), SpellingBee(size=bee, split=split)]


def mid_mixture(kind: str, split: str) -> Task:
    if kind == "offline":
        if split == "val":
            return TaskMixture([SyntheticGSM8K(size=200, split="test"), SyntheticChoice(size=200, split="test")])
        return TaskMixture([SyntheticGSM8K(size=4000), SyntheticChoice(size=2000), *[_identity()] * 8,
                            *_spelling(2000, 1000, split)])
    from nanochat.tasks.gsm8k import GSM8K
    from nanochat.tasks.mmlu import MMLU
    from nanochat.tasks.smoltalk import SmolTalk

    if split == "val":
        return TaskMixture([SmolTalk(split="test"), MMLU(subset="all", split="test", stop=5200),
                            GSM8K(split="test", stop=420)])
    return TaskMixture([SmolTalk(split="train"), MMLU(subset="auxiliary_train", split="train"),
                        GSM8K(split="train"), _identity(), _identity(), *_spelling(200_000, 80_000, split)])


def sft_mixture(kind: str, split: str) -> Task:
    if kind == "offline":
        if split == "val":
            return TaskMixture([SyntheticGSM8K(size=100, split="test"), SyntheticChoice(size=100, split="test")])
        return TaskMixture([SyntheticGSM8K(size=600), SyntheticChoice(size=300), *[_identity()] * 4,
                            *_spelling(200, 200, split)])
    from nanochat.tasks.arc import ARC
    from nanochat.tasks.gsm8k import GSM8K
    from nanochat.tasks.smoltalk import SmolTalk

    if split == "val":
        return SmolTalk(split="test")
    return TaskMixture([ARC(subset="ARC-Easy", split="train"), ARC(subset="ARC-Challenge", split="train"),
                        GSM8K(split="train"), SmolTalk(split="train", stop=10_000), _identity(),
                        *_spelling(300, 300, split)])


def rl_task(kind: str, split: str) -> Task:
    """The problems RL samples answers for (train) and measures pass@k on (val)."""
    if kind == "offline":
        return SyntheticGSM8K(size=2000, split="train") if split == "train" else SyntheticGSM8K(size=200, split="test")
    from nanochat.tasks.gsm8k import GSM8K

    return GSM8K(split="train") if split == "train" else GSM8K(split="test")


def load_or_refuse(task: Task, kind: str) -> Task:
    """Touch the data now, so missing files stop the stage before any model is built, in one line."""
    try:
        if len(task) == 0:
            raise SystemExit(f"error: the {kind} mixture is empty")
    except MissingDataError as e:
        hint = " (or train offline with --data offline)" if kind == "full" else ""
        raise SystemExit(f"error: {e}{hint}") from None
    return task

"""ARC (AI2 Reasoning Challenge): grade-school science questions with 3-5 choices (allenai/ai2_arc).

ARC-Easy (test 2,376) and ARC-Challenge (test 1,172, the questions simple retrieval and co-occurrence methods
got wrong). Scored by which answer letter the model gives the highest logit.
"""

from nanochat.tasks.common import CategoricalTask, Conversation, mc_conversation
from nanochat.tasks.data import read_parquet_rows, require

SUBSETS = ("ARC-Easy", "ARC-Challenge")
SPLITS = ("train", "validation", "test")


def row_to_conversation(row: dict) -> Conversation:
    """A raw row {"question", "choices": {"text", "label"}, "answerKey"}; labels may be A-E or 1-5."""
    labels, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
    if row["answerKey"] not in labels:
        raise ValueError(f"ARC row {row.get('id', '?')}: answer {row['answerKey']!r} is not one of {labels}")
    return mc_conversation(row["question"], texts, labels.index(row["answerKey"]))


class ARC(CategoricalTask):
    def __init__(self, subset: str = "ARC-Easy", split: str = "test", **slice_args):
        if subset not in SUBSETS or split not in SPLITS:
            raise ValueError(f"ARC: subset must be one of {SUBSETS} and split one of {SPLITS}")
        super().__init__(**slice_args)
        self.subset, self.split, self.name = subset, split, subset

    def load_rows(self) -> list[dict]:
        return read_parquet_rows(require("arc", f"{self.subset}/{self.split}.parquet", self.name))

    def get_example(self, index: int) -> Conversation:
        return row_to_conversation(self.rows[index])

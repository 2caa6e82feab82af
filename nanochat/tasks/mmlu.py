"""MMLU: four-choice questions on 57 subjects, from elementary maths to law (cais/mmlu).

`subset="all"` has the dev (5 per subject), validation (1,531) and test (14,042) splits; `subset=
"auxiliary_train"` (split "train", ~100k questions from other multiple-choice datasets) is mid-training data
that teaches the answer-with-a-letter format. Scored by the answer letter with the highest logit.
"""

from nanochat.tasks.common import CategoricalTask, Conversation, mc_conversation
from nanochat.tasks.data import read_parquet_rows, require

SPLITS = {"all": ("dev", "validation", "test"), "auxiliary_train": ("train",)}


def row_to_conversation(row: dict) -> Conversation:
    """A raw row {"question", "subject", "choices", "answer": int}; auxiliary_train rows are wrapped in "train"."""
    row = row.get("train", row)
    question = row["question"]
    if row.get("subject"):
        question = f"({row['subject'].replace('_', ' ')}) {question}"
    return mc_conversation(question, list(row["choices"]), int(row["answer"]))


class MMLU(CategoricalTask):
    name = "MMLU"

    def __init__(self, subset: str = "all", split: str = "test", **slice_args):
        if split not in SPLITS.get(subset, ()):
            raise ValueError("MMLU: subset/split must be one of "
                             + ", ".join(f"{s}/{p}" for s, splits in SPLITS.items() for p in splits))
        super().__init__(**slice_args)
        self.subset, self.split = subset, split

    def load_rows(self) -> list[dict]:
        return read_parquet_rows(require("mmlu", f"{self.subset}/{self.split}.parquet", self.name))

    def get_example(self, index: int) -> Conversation:
        return row_to_conversation(self.rows[index])

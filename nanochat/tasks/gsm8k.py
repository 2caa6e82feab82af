"""GSM8K: grade-school maths word problems with worked solutions (openai/gsm8k; train 7,473, test 1,319).

A solution marks each calculation as `<<48/2=24>>` and ends with `#### 72`, the final answer. For chat
training the marks become tool use: the expression is a `python` part (the model learns to call the
calculator) and the result a `python_output` part (the engine computes and forces it at inference). Scoring
compares the number after `#### ` in the model's answer with the reference's.
"""

import re

from nanochat.tasks.common import Conversation, Part, RowsTask, assistant_text
from nanochat.tasks.data import read_parquet_rows, require

SUBSETS = ("main",)
SPLITS = ("train", "test")
ANSWER_RE = re.compile(r"#### (-?[0-9.,]+)")
CALC_RE = re.compile(r"<<([^>]*)>>")


def extract_answer(text: str) -> str | None:
    """The number after the first `#### ` with commas (and a sentence's final period) removed, else None."""
    match = ANSWER_RE.search(text)
    if match is None:
        return None
    number = match.group(1).replace(",", "").rstrip(".")
    return number or None


def _solution_parts(answer: str) -> list[Part]:
    """A GSM8K solution as text / python / python_output parts (empty text between marks is dropped)."""
    parts: list[Part] = []
    pieces = CALC_RE.split(answer)  # text, expr=result, text, expr=result, ..., text
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            if piece:
                parts.append({"type": "text", "text": piece})
            continue
        expression, _, result = piece.rpartition("=") if "=" in piece else (piece, "", "")
        if expression.strip():
            parts.append({"type": "python", "text": expression})
        if result.strip():
            parts.append({"type": "python_output", "text": result})
    return parts


def row_to_conversation(row: dict) -> Conversation:
    """A raw {"question", "answer"} row as a conversation whose answer calls the calculator."""
    return {
        "messages": [
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": _solution_parts(row["answer"])},
        ]
    }


class GSM8K(RowsTask):
    name = "GSM8K"

    def __init__(self, subset: str = "main", split: str = "test", **slice_args):
        if subset not in SUBSETS or split not in SPLITS:
            raise ValueError(f"GSM8K: subset must be one of {SUBSETS} and split one of {SPLITS}")
        super().__init__(**slice_args)
        self.subset, self.split = subset, split

    def load_rows(self) -> list[dict]:
        return read_parquet_rows(require("gsm8k", f"{self.split}.parquet", self.name))

    def get_example(self, index: int) -> Conversation:
        return row_to_conversation(self.rows[index])

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        """True when the response's `#### ` number equals the reference answer's."""
        reference = extract_answer(assistant_text(conversation["messages"][-1]))
        predicted = extract_answer(response)
        return predicted is not None and predicted == reference

"""Conversations from a JSONL file of your own, e.g. an identity file that teaches the model its name.

Each non-blank line is a conversation: `{"messages": [...]}` or just the list of messages, in the schema of
nanochat/tasks/common.py. A training task: it has no score of its own.
"""

from pathlib import Path

from nanochat.tasks.common import Conversation, MissingDataError, RowsTask
from nanochat.tasks.data import read_jsonl


class CustomJSON(RowsTask):
    def __init__(self, filepath, **slice_args):
        super().__init__(**slice_args)
        self.filepath = Path(filepath)
        self.name = self.filepath.name

    def load_rows(self) -> list:
        if not self.filepath.is_file():
            raise MissingDataError(f"{self.name}: missing data {self.filepath}; write one conversation per line "
                                   '({"messages": [...]}) into it')
        rows = read_jsonl(self.filepath)
        for lineno, row in enumerate(rows, 1):
            messages = row.get("messages") if isinstance(row, dict) else row
            if not isinstance(messages, list) or not messages:
                raise ValueError(f"{self.filepath}: conversation {lineno} is not a non-empty list of messages")
        return rows

    def get_example(self, index: int) -> Conversation:
        row = self.rows[index]
        return {"messages": row["messages"] if isinstance(row, dict) else row}

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        raise TypeError(f"{self.name} is training data: it has no evaluation")

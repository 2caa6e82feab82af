"""SmolTalk: general chat conversations for mid-training and SFT (HuggingFaceTB/smol-smoltalk; train ~460k,
test ~24k). A training task: it has no score of its own."""

from nanochat.tasks.common import Conversation, RowsTask
from nanochat.tasks.data import read_parquet_rows, require

SPLITS = ("train", "test")


class SmolTalk(RowsTask):
    name = "SmolTalk"

    def __init__(self, split: str = "train", **slice_args):
        if split not in SPLITS:
            raise ValueError(f"SmolTalk: split must be one of {SPLITS}")
        super().__init__(**slice_args)
        self.split = split

    def load_rows(self) -> list[dict]:
        return read_parquet_rows(require("smoltalk", f"{self.split}.parquet", self.name))

    def get_example(self, index: int) -> Conversation:
        messages = [{"role": m["role"], "content": m["content"]} for m in self.rows[index]["messages"]]
        return {"messages": messages}

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        raise TypeError("SmolTalk is training data: it has no evaluation")

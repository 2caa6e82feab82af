"""Type stubs for rustbpe (the Rust extension module `rustbpe._rustbpe`, re-exported here)."""

from collections.abc import Callable, Iterable

GPT4_PATTERN: str
"""The GPT-4 (cl100k_base) split pattern, used when `pattern` is None."""

class Tokenizer:
    """A byte-level BPE tokenizer: 256 byte tokens, then one token per learned merge.

    Merges are chosen by the highest pair count; ties go to the smallest pair (left id, right id).
    """

    def __init__(self) -> None: ...
    def train_from_iterator(
        self,
        iterator: Iterable[str],
        vocab_size: int,
        buffer_size: int = 8192,
        pattern: str | None = None,
        *,
        progress: Callable[[int, int], object] | None = None,
    ) -> None:
        """Learn `vocab_size - 256` merges (fewer if the corpus runs out of pairs) from the texts.

        An empty corpus gives the 256-token byte tokenizer. `progress(done, total)` is called at the start
        of the merge phase, about every 0.5% of merges and at the end (done == total on the last call).
        Raises ValueError (vocab_size < 256, buffer_size < 1, invalid pattern, text that is not valid
        Unicode), TypeError (not iterable, non-str item, progress not callable); exceptions from the
        iterator or from `progress` propagate and leave the tokenizer as it was.
        """
    def get_pattern(self) -> str:
        """The split pattern used in training ("" before training)."""
    @property
    def vocab_size(self) -> int:
        """256 + number of learned merges."""
    def get_mergeable_ranks(self) -> list[tuple[bytes, int]]:
        """Every token as (bytes, id) in id order; `dict()` of it is tiktoken's `mergeable_ranks`."""
    def get_merges(self) -> list[tuple[int, int]]:
        """The merges in order: merge k joined (left, right) into token 256 + k."""
    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (tiktoken's rule). RuntimeError before training."""
    def batch_encode(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts in parallel."""
    def decode(self, ids: list[int]) -> str:
        """Text of token ids. ValueError for an unknown id, UnicodeDecodeError for invalid UTF-8."""

def split_text(text: str, pattern: str | None = None, *, engine: str = "auto") -> list[str]:
    """The chunks `pattern` (default GPT-4) cuts `text` into; engine "regex" forces fancy-regex."""

def uses_fast_splitter(pattern: str | None = None) -> bool:
    """True when `pattern` is handled by the built-in scanner (the GPT-4 pattern family)."""

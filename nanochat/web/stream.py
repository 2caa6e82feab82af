"""Token ids -> text pieces for the event stream: whole UTF-8 characters only, calculator calls kept apart.

A byte-level BPE token can end in the middle of a multi-byte character ("é" may be two tokens of one byte each).
Each token's bytes go through an incremental UTF-8 decoder, which returns only complete characters and keeps the
rest until the next token completes them, so every piece sent is valid text and nothing is ever sent twice.

The calculator's special tokens are not text: <|python_start|>expr<|python_end|> is a call the model wrote and
<|output_start|>result<|output_end|> the answer the engine forced in. They switch the kind of the pieces that
follow (TEXT, TOOL_CALL, TOOL_OUTPUT); the markers themselves produce no piece.
"""

import codecs
import enum
from dataclasses import dataclass


class Kind(str, enum.Enum):
    TEXT = "text"
    TOOL_CALL = "tool_call"
    TOOL_OUTPUT = "tool_output"


@dataclass(frozen=True)
class Piece:
    kind: Kind
    text: str


class TextStream:
    """Feed token ids one at a time; get back the pieces of text that became complete."""

    def __init__(self, tokenizer):
        special = tokenizer.encode_special
        self.switch = {
            special("<|python_start|>"): Kind.TOOL_CALL,
            special("<|python_end|>"): Kind.TEXT,
            special("<|output_start|>"): Kind.TOOL_OUTPUT,
            special("<|output_end|>"): Kind.TEXT,
        }
        self.token_bytes = tokenizer.enc.decode_single_token_bytes
        self.n_regular = tokenizer.get_vocab_size() - len(tokenizer.get_special_tokens())
        self.kind = Kind.TEXT
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> list[Piece]:
        if token in self.switch:
            pieces = self.finish()
            self.kind = self.switch[token]
            return pieces
        if token >= self.n_regular:  # any other special token: not text
            return []
        text = self.decoder.decode(self.token_bytes(token))
        return [Piece(self.kind, text)] if text else []

    def finish(self) -> list[Piece]:
        """Whatever bytes are still held (an unfinished character becomes U+FFFD)."""
        text = self.decoder.decode(b"", final=True)
        return [Piece(self.kind, text)] if text else []

"""rustbpe: byte-level BPE training in Rust (PyO3), API-compatible with the rustbpe 0.1 package.

    import rustbpe
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(texts, vocab_size=4096)            # GPT-4 split pattern by default
    ranks = dict(tok.get_mergeable_ranks())                    # bytes -> id, for tiktoken
    tok.encode("hello world")

Merges are chosen by the highest pair count; ties go to the smallest pair (left id, right id).
`split_text(text, pattern=None)` shows the chunks a pattern cuts text into.
"""
from ._rustbpe import GPT4_PATTERN, Tokenizer, split_text, uses_fast_splitter

__all__ = ["GPT4_PATTERN", "Tokenizer", "split_text", "uses_fast_splitter"]

"""The BPE tokenizer: trained by our Rust crate `rustbpe`, encoded and decoded by `tiktoken`.

Training and inference need different things. Training must find merges fast over gigabytes of text (rustbpe,
our own Rust trainer); encoding must be fast and battle-tested at inference time (tiktoken, OpenAI's encoder).
The two meet in the "mergeable ranks": the 256 byte tokens followed by every merge, each a byte string with its
id. The nine special tokens come right after the merges.

The split regex is part of the tokenizer: it is saved with it and the same string drives training and encoding,
so the two can never disagree (nanochat #291).

A trained tokenizer is a directory with two plain-text files (loading never executes code, unlike a pickle):
- `tokenizer.json`: format name and version, the split pattern, the special tokens and their ids, vocab size and
  free-form metadata (what it was trained on, how long it took);
- `tokenizer.ranks`: one line per token, `<base64 of the token's bytes> <rank>`, the format tiktoken uses.

Chat conversations become token ids with `render_conversation`, which also says which tokens the model is trained
to predict (mask 1: what the assistant writes) and which it is only shown (mask 0: the user, the system prompt,
and the tool output that the engine forces into the stream).
"""

import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tiktoken

SPECIAL_TOKENS = [
    "<|bos|>",  # begins every document; also the document delimiter in pretraining
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",  # the assistant calls the calculator tool ...
    "<|python_end|>",
    "<|output_start|>",  # ... and the engine forces its result back into the stream
    "<|output_end|>",
]

# GPT-4's split pattern with one change (as in nanochat): numbers split into runs of at most two digits, not
# three, which spends fewer merges on number chunks in a small vocabulary.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

EMBEDDED_VOCAB_SIZE = 4096
FORMAT_NAME = "nanochat-bpe"
FORMAT_VERSION = 1
CONFIG_FILE = "tokenizer.json"
RANKS_FILE = "tokenizer.ranks"


class RustBPETokenizer:
    """A byte-level BPE tokenizer: tiktoken encoding with our merges, split pattern and special tokens."""

    def __init__(self, mergeable_ranks: dict[bytes, int], pattern: str, metadata: dict | None = None):
        self.special_ids = {name: len(mergeable_ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.pattern = pattern
        self.mergeable_ranks = mergeable_ranks
        self.metadata = dict(metadata or {})
        self.enc = tiktoken.Encoding(
            name="nanochat", pat_str=pattern, mergeable_ranks=mergeable_ranks, special_tokens=self.special_ids
        )
        self.bos_token_id = self.encode_special("<|bos|>")

    # --- training, saving, loading -----------------------------------------------------------------------------

    @classmethod
    def train_from_iterator(cls, text_iterator, vocab_size: int, progress=None, metadata: dict | None = None):
        """Train on an iterator of strings. `vocab_size` counts the 256 bytes, the merges and the special tokens.

        `progress`, if given, is passed to rustbpe and called by it as training advances. On a small corpus
        rustbpe may run out of pairs to merge and return fewer tokens than asked for; `get_vocab_size()` says.
        """
        import rustbpe

        min_size = 256 + len(SPECIAL_TOKENS)
        if not isinstance(vocab_size, int) or vocab_size < min_size:
            raise ValueError(
                f"vocab_size must be an integer >= {min_size} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)"
            )
        trainer = rustbpe.Tokenizer()
        kwargs = {"progress": progress} if progress is not None else {}
        trainer.train_from_iterator(text_iterator, vocab_size - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN, **kwargs)
        ranks = {bytes(token): rank for token, rank in trainer.get_mergeable_ranks()}
        return cls(ranks, trainer.get_pattern(), metadata)

    def save(self, directory) -> None:
        """Write tokenizer.ranks and tokenizer.json into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in self._ranks_in_order()]
        (directory / RANKS_FILE).write_text("".join(lines), encoding="ascii")
        config = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": dict(self.special_ids),
            "vocab_size": self.get_vocab_size(),
            "ranks_file": RANKS_FILE,
            "metadata": self.metadata,
        }
        # the config is written last: a directory with a tokenizer.json always has its ranks file
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def from_directory(cls, directory):
        """Load a tokenizer saved by `save`. A missing or damaged file is a clear error naming that file."""
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"no tokenizer at {directory}: {config_path} does not exist "
                "(train one with: python -m nanochat.scripts.tok_train)"
            )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{config_path} is not valid JSON ({e}); delete the directory and retrain") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise ValueError(f"{config_path} is not a nanochat tokenizer file (expected \"format\": \"{FORMAT_NAME}\")")
        if config.get("version") != FORMAT_VERSION:
            version = config.get("version")
            raise ValueError(f"{config_path} has format version {version!r}; this code reads {FORMAT_VERSION}")
        for key, kind in (("pattern", str), ("special_tokens", dict)):
            if not isinstance(config.get(key), kind):
                raise ValueError(f"{config_path}: missing or invalid {key!r}")
        ranks_name = str(config.get("ranks_file", RANKS_FILE))
        if Path(ranks_name).name != ranks_name:
            raise ValueError(f"{config_path}: ranks_file must be a file name inside {directory}, got {ranks_name!r}")
        ranks = _read_ranks(directory / ranks_name)
        expected = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
        if config["special_tokens"] != expected:
            raise ValueError(f"{config_path}: special tokens {config['special_tokens']} do not match {expected}")
        try:
            return cls(ranks, config["pattern"], config.get("metadata"))
        except ValueError as e:  # tiktoken rejects an invalid split pattern
            raise ValueError(f"{config_path}: the split pattern cannot be used ({e})") from None

    def _ranks_in_order(self):
        return sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])

    # --- the vocabulary ----------------------------------------------------------------------------------------

    def get_vocab_size(self) -> int:
        return self.enc.n_vocab

    def get_pattern(self) -> str:
        return self.pattern

    def get_special_tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS)

    def id_to_token(self, token_id: int) -> str:
        return self.enc.decode([token_id])

    def encode_special(self, text: str) -> int:
        """The id of a special token such as "<|bos|>"."""
        try:
            return self.special_ids[text]
        except (KeyError, TypeError):
            names = ", ".join(SPECIAL_TOKENS)
            raise ValueError(f"{text!r} is not a special token; special tokens are {names}") from None

    def get_bos_token_id(self) -> int:
        return self.bos_token_id

    def token_bytes(self) -> list[int]:
        """For each token id, the number of raw bytes it stands for; 0 for special tokens (for bits per byte)."""
        n_regular = len(self.mergeable_ranks)
        decode = self.enc.decode_single_token_bytes
        return [len(decode(i)) if i < n_regular else 0 for i in range(self.get_vocab_size())]

    def get_token_bytes(self, device="cpu"):
        """`token_bytes()` as a LongTensor on `device`."""
        import torch

        return torch.tensor(self.token_bytes(), dtype=torch.long, device=device)

    # --- encoding and decoding -----------------------------------------------------------------------------------

    def _special_or_id(self, token) -> int:
        return self.encode_special(token) if isinstance(token, str) else int(token)

    def encode(self, text, prepend=None, append=None, num_threads: int = 8):
        """Encode a string (-> list of ids) or a list of strings (-> list of lists, encoded in parallel).

        Special-token text inside `text` is encoded as ordinary text, never as a special token. `prepend` and
        `append` add one token to each result: an id or a special token's text, e.g. prepend="<|bos|>".
        """
        prefix = [] if prepend is None else [self._special_or_id(prepend)]
        suffix = [] if append is None else [self._special_or_id(append)]
        if isinstance(text, str):
            return prefix + self.enc.encode_ordinary(text) + suffix
        if isinstance(text, (list, tuple)):
            if not all(isinstance(t, str) for t in text):
                raise TypeError("encode() takes a string or a list of strings")
            batch = self.enc.encode_ordinary_batch(list(text), num_threads=num_threads)
            return [prefix + ids + suffix for ids in batch]
        raise TypeError(f"encode() takes a string or a list of strings, not {type(text).__name__}")

    __call__ = encode

    def decode(self, ids) -> str:
        return self.enc.decode(list(ids))

    # --- chat ----------------------------------------------------------------------------------------------------

    def render_conversation(self, conversation, max_tokens: int = 2048):
        """Token ids and loss mask for a chat: {"messages": [...]} or the list of messages itself.

        Layout: <|bos|>, then per user turn <|user_start|> text <|user_end|>, per assistant turn
        <|assistant_start|> content <|assistant_end|>. A leading system message is merged into the first user
        message. Mask 1 marks what the model is trained to write: the assistant's text and python tool calls
        (with their <|python_start|>/<|python_end|>), and <|assistant_end|>. Everything else is mask 0,
        including tool output inside <|output_start|>..<|output_end|>, which the engine forces at inference.
        Both lists are cut to `max_tokens`.
        """
        messages = _validated_messages(conversation)
        ids, mask = [], []

        def add(tokens, m):
            tokens = [tokens] if isinstance(tokens, int) else tokens
            ids.extend(tokens)
            mask.extend([m] * len(tokens))

        special = self.encode_special
        add(self.bos_token_id, 0)
        for message in messages:
            if message["role"] == "user":
                add(special("<|user_start|>"), 0)
                add(self.enc.encode_ordinary(message["content"]), 0)
                add(special("<|user_end|>"), 0)
                continue
            add(special("<|assistant_start|>"), 0)
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts:
                tokens = self.enc.encode_ordinary(part["text"])
                if part["type"] == "text":
                    add(tokens, 1)
                elif part["type"] == "python":
                    add(special("<|python_start|>"), 1)
                    add(tokens, 1)
                    add(special("<|python_end|>"), 1)
                else:  # python_output: forced by the engine, never predicted
                    add(special("<|output_start|>"), 0)
                    add(tokens, 0)
                    add(special("<|output_end|>"), 0)
            add(special("<|assistant_end|>"), 1)
        return ids[:max_tokens], mask[:max_tokens]

    def render_for_completion(self, conversation) -> list[int]:
        """Prompt ids for the model to write the next assistant turn.

        A final assistant message (e.g. the reference answer of an eval task) is dropped; the result ends with
        <|assistant_start|>. The conversation must then end with a user message.
        """
        messages = _validated_messages(conversation)
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("render_for_completion needs a conversation that ends with a user message "
                             "(or with a user message and the assistant's answer, which is dropped)")
        ids, _ = self.render_conversation({"messages": messages}, max_tokens=sys.maxsize)
        return ids + [self.encode_special("<|assistant_start|>")]

    def visualize_tokenization(self, ids, mask=None):
        """A rich Text showing each token; tokens with mask 1 (trained on) green, mask 0 dim, specials bold."""
        from rich.text import Text

        out = Text()
        n_regular = len(self.mergeable_ranks)
        for i, token_id in enumerate(ids):
            piece = self.id_to_token(token_id)
            style = "bold " if token_id >= n_regular else ""
            style += "green" if mask is not None and mask[i] else "dim"
            out.append(piece.replace("\n", "\\n"), style=style)
            out.append("|", style="grey50")
        return out


def _read_ranks(path: Path) -> dict[bytes, int]:
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer ranks file {path} does not exist; the tokenizer directory is incomplete")
    ranks: dict[bytes, int] = {}
    with open(path, encoding="ascii", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token_b64, rank_text = line.split()
                token, rank = base64.b64decode(token_b64, validate=True), int(rank_text)
            except (ValueError, UnicodeDecodeError):
                got = line.strip()[:60]
                raise ValueError(f"{path}, line {lineno}: expected '<base64 token> <rank>', got {got!r}") from None
            if rank != len(ranks) or token in ranks:
                raise ValueError(f"{path}, line {lineno}: ranks must be 0, 1, 2, ... with no repeated token")
            ranks[token] = rank
    if len(ranks) < 256:
        raise ValueError(f"{path} holds {len(ranks)} tokens; a byte-level BPE needs at least the 256 byte tokens")
    return ranks


# ---------------------------------------------------------------------------------------------------------------
# conversation validation

ROLES = ("system", "user", "assistant")
PART_TYPES = ("text", "python", "python_output")


def _validated_messages(conversation) -> list[dict]:
    """Check a conversation and return its messages with the system prompt merged into the first user message."""
    messages = conversation.get("messages") if isinstance(conversation, dict) else conversation
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError('a conversation is {"messages": [...]} with at least one message')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f'message {i} must be a dict with "role" and "content"')
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has unknown role {m['role']!r}; roles are {', '.join(ROLES)}")
        _check_content(i, m)
    offset = 1 if messages[0]["role"] == "system" else 0
    for i in range(offset, len(messages)):
        expected = "user" if (i - offset) % 2 == 0 else "assistant"
        role = messages[i]["role"]
        if role == "system":
            raise ValueError(f"message {i} is a system message: only the first message may be one")
        if role != expected:
            raise ValueError(
                f"message {i} has role {role!r} but {expected!r} was expected: turns must alternate "
                "user, assistant, user, ... after an optional system message"
            )
    if offset == 0:
        return list(messages)
    if len(messages) < 2:
        raise ValueError("a system message must be followed by a user message")
    merged = messages[0]["content"] + "\n\n" + messages[1]["content"]
    return [{"role": "user", "content": merged}] + list(messages[2:])


def _check_content(i: int, m: dict) -> None:
    content = m["content"]
    if isinstance(content, str):
        if not content.strip():
            raise ValueError(f"message {i} ({m['role']}) has empty content")
        return
    if m["role"] != "assistant":
        raise ValueError(f"message {i} ({m['role']}): content must be a string (only assistant messages have parts)")
    if not isinstance(content, list) or not content:
        raise ValueError(f"message {i} (assistant): content must be a non-empty string or a non-empty list of parts")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            raise ValueError(f"message {i}, part {j}: type must be one of {', '.join(PART_TYPES)}")
        if not isinstance(part.get("text"), str) or not part["text"]:
            raise ValueError(f"message {i}, part {j} ({part['type']}): \"text\" must be a non-empty string")


# ---------------------------------------------------------------------------------------------------------------
# the tokenizer everyone uses

_LOADED: dict[tuple, RustBPETokenizer] = {}


def _load_cached(directory: Path) -> RustBPETokenizer:
    """from_directory, memoised on the files' identity so a warm process loads each tokenizer once."""
    files = [p for p in (directory / CONFIG_FILE, directory / RANKS_FILE) if p.exists()]
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if key not in _LOADED:
        _LOADED[key] = RustBPETokenizer.from_directory(directory)
    return _LOADED[key]


def train_embedded_tokenizer(directory: Path) -> RustBPETokenizer:
    """Train the EMBEDDED_VOCAB_SIZE tokenizer on the embedded corpus's train split and save it atomically.

    It is written to a temporary directory next to `directory` and renamed into place, so a reader never sees a
    half-written tokenizer; when two processes race, the first rename wins and the other uses its result.
    """
    from nanochat import embedded_corpus

    t0 = time.time()
    docs = embedded_corpus.split("train")
    tokenizer = RustBPETokenizer.train_from_iterator(iter(docs), EMBEDDED_VOCAB_SIZE)
    seconds = time.time() - t0
    tokenizer.metadata = {
        "trained_on": "embedded corpus (train split)",
        "documents": len(docs),
        "characters": sum(len(d) for d in docs),
        "train_seconds": round(seconds, 3),
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        tokenizer.save(tmp)
        try:
            os.rename(tmp, directory)
        except OSError:
            if not (directory / CONFIG_FILE).is_file():
                raise  # not a lost race: a real problem (permissions, a stray file in the way)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tokenizer


def get_tokenizer() -> RustBPETokenizer:
    """The project's tokenizer: $NANOCHAT_BASE_DIR/tokenizer/ if one was trained, else the embedded one.

    The embedded-corpus tokenizer (vocab EMBEDDED_VOCAB_SIZE) is trained on first use (a second or two) and
    cached in $NANOCHAT_BASE_DIR/tokenizer_embedded/.
    """
    from nanochat.common import get_base_dir

    base = Path(get_base_dir())
    trained = base / "tokenizer"
    if (trained / CONFIG_FILE).is_file():
        return _load_cached(trained)
    if trained.is_dir() and any(trained.iterdir()):
        print(
            f"note: ignoring {trained}: it has no {CONFIG_FILE} (an upstream nanochat tokenizer.pkl is never "
            "loaded: unpickling can run code); using the embedded-corpus tokenizer",
            file=sys.stderr,
        )
    embedded = base / "tokenizer_embedded"
    if not (embedded / CONFIG_FILE).is_file():
        print(f"training the embedded-corpus tokenizer (vocab {EMBEDDED_VOCAB_SIZE}) once; caching it in {embedded}",
              file=sys.stderr)
        train_embedded_tokenizer(embedded)
    return _load_cached(embedded)


def get_token_bytes(device="cpu"):
    """Bytes per token id of `get_tokenizer()` (0 for special tokens) as a LongTensor, for bits per byte."""
    return get_tokenizer().get_token_bytes(device)

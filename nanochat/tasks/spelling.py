"""Spelling tasks built from a word list: counting letters (SpellingBee) and spelling words out (SimpleSpelling).

Small models see tokens, not letters, so "how many r are in strawberry?" is hard for them. SpellingBee teaches
a procedure: spell the word letter by letter, count the hits, give the number after `#### ` (scored like
GSM8K). SimpleSpelling only asks for the letters, a warm-up for the same skill. Examples are generated from
the index with a fixed seed (train and test draw from different seeds), so any size works offline. The words
are the lower-case alphabetic Webster's 2nd words the `english-words` package ships (~234k).
"""

import random
import string

from nanochat.tasks.common import Conversation, MissingDataError, Task, assistant_text
from nanochat.tasks.gsm8k import extract_answer

SPLIT_SEEDS = {"train": 0, "test": 10_000_000}
QUESTIONS = [
    "How many {letter} are in the word {word}?",
    "How many times does the letter {letter} appear in {word}?",
    "Count the letter '{letter}' in '{word}'.",
    "In {word}, how many {letter}s are there?",
    "how many {letter} in {word}",
    "What is the number of '{letter}' characters in the word \"{word}\"?",
]
_WORDS: list[str] = []


def word_list() -> list[str]:
    """The words, sorted, loaded once from the english-words package."""
    if not _WORDS:
        try:
            from english_words import get_english_words_set
        except ImportError:
            raise MissingDataError("spelling tasks: missing the english-words package; install it with: "
                                   "pip install english-words") from None
        _WORDS.extend(sorted(w for w in get_english_words_set(["web2"], lower=True, alpha=True) if len(w) >= 3))
    return _WORDS


def count_letter_answer(word: str, letter: str) -> str:
    """The worked answer: spell, walk the letters keeping a count, state the total, `#### n`."""
    lines = [f"Spelling {word} letter by letter: {','.join(word)}", f"Now counting the '{letter}'s:"]
    count = 0
    for position, char in enumerate(word, 1):
        if char == letter:
            count += 1
            lines.append(f"{position}:{char} yes, {count} so far")
        else:
            lines.append(f"{position}:{char}")
    lines.append(f"The letter '{letter}' appears {count} time{'s' if count != 1 else ''} in {word}.")
    lines.append(f"#### {count}")
    return "\n".join(lines)


class _WordTask(Task):
    """Examples drawn from the word list by a Random seeded with the split and the index."""

    def __init__(self, size: int = 1000, split: str = "train", **slice_args):
        if split not in SPLIT_SEEDS or size < 1:
            raise ValueError(f"{self.name}: split must be one of {tuple(SPLIT_SEEDS)} and size >= 1")
        super().__init__(**slice_args)
        self.size, self.split = size, split

    def num_examples(self) -> int:
        return self.size

    def _rng(self, index: int) -> random.Random:
        if not 0 <= index < self.size:
            raise IndexError(f"{self.name} has {self.size} examples")
        return random.Random(SPLIT_SEEDS[self.split] + index)


class SpellingBee(_WordTask):
    name = "SpellingBee"

    def get_example(self, index: int) -> Conversation:
        rng = self._rng(index)
        word = rng.choice(word_list())
        letter = rng.choice(word) if rng.random() < 0.7 else rng.choice(string.ascii_lowercase)
        question = rng.choice(QUESTIONS).format(letter=letter, word=word)
        return {"messages": [{"role": "user", "content": question},
                             {"role": "assistant", "content": count_letter_answer(word, letter)}]}

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        predicted = extract_answer(response)
        return predicted is not None and predicted == extract_answer(assistant_text(conversation["messages"][-1]))


class SimpleSpelling(_WordTask):
    name = "SimpleSpelling"

    def get_example(self, index: int) -> Conversation:
        word = self._rng(index).choice(word_list())
        return {"messages": [{"role": "user", "content": f"Spell the word: {word}"},
                             {"role": "assistant", "content": f"{word}:{','.join(word)}"}]}

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        return response.strip() == assistant_text(conversation["messages"][-1])

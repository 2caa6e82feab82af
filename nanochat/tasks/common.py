"""The task base: a dataset of conversations, read by index, sliced, mixed and scored.

Every task (ARC, MMLU, GSM8K, HumanEval, SmolTalk, spelling, custom JSONL) is a `Task`: `len(task)` examples,
`task[i]` is a `Conversation`, and `task.evaluate(conversation, response)` scores what a model wrote for it.
Constructing a task is free: nothing is read from disk (and nothing ever from the network) until the first
example is asked for, so `evaluate` works on a task whose data was never downloaded.

A conversation is `{"messages": [{"role": "user"|"assistant"|"system", "content": ...}]}`. A user or system
message's content is a string; an assistant's is a string or a list of parts
`{"type": "text"|"python"|"python_output", "text": str}` — python is a calculator call the model writes,
python_output is the result the engine forces back in. Categorical tasks (multiple choice) also carry
`letters`, the answer letters the model chooses between, and their assistant message is the right letter.

`TaskMixture` interleaves tasks in a deterministic shuffle (training mixtures); `TaskSequence` plays them one
after the other (curricula).
"""

import random
from abc import ABC, abstractmethod
from enum import Enum
from functools import cached_property
from typing import Literal, NotRequired, TypedDict

Role = Literal["system", "user", "assistant"]
PartType = Literal["text", "python", "python_output"]


class Part(TypedDict):
    type: PartType
    text: str


class Message(TypedDict):
    role: Role
    content: str | list[Part]


class Conversation(TypedDict):
    messages: list[Message]
    letters: NotRequired[list[str]]  # categorical tasks: the answer letters, e.g. ["A", "B", "C", "D"]
    entry_point: NotRequired[str]  # HumanEval: the function the tests call
    test: NotRequired[str]  # HumanEval: the tests, a `check(candidate)` function


class EvalType(str, Enum):
    """How a task is scored: by the logits of the answer letters, or by sampling a full answer."""

    CATEGORICAL = "categorical"
    GENERATIVE = "generative"


class MissingDataError(RuntimeError):
    """A task's data files are not on disk; the message is one line naming them and the command that fetches them."""


def assistant_text(message: Message) -> str:
    """The text of a message with its parts joined (python calls and outputs included as plain text)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


class Task(ABC):
    """A dataset of conversations, viewed through range(start, stop, step) of its examples."""

    name = "task"
    eval_type = EvalType.GENERATIVE

    def __init__(self, start: int = 0, stop: int | None = None, step: int = 1):
        if start < 0 or (stop is not None and stop < start) or step < 1:
            raise ValueError(f"{self.name}: need 0 <= start <= stop and step >= 1 (got {start}, {stop}, {step})")
        self.start, self.stop, self.step = start, stop, step

    @abstractmethod
    def num_examples(self) -> int:
        """How many examples the whole dataset has (loads the data)."""

    @abstractmethod
    def get_example(self, index: int) -> Conversation:
        """Example `index` of the whole dataset, ignoring the slice."""

    @abstractmethod
    def evaluate(self, conversation: Conversation, response: str) -> bool:
        """Whether `response` (the model's answer: a letter, or generated text) is right for `conversation`."""

    @cached_property
    def _indices(self) -> range:
        stop = self.num_examples() if self.stop is None else min(self.stop, self.num_examples())
        return range(self.start, stop, self.step)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> Conversation:
        return self.get_example(self._indices[i])  # range indexing: negatives work, out of range raises IndexError

    def __iter__(self):
        return (self.get_example(i) for i in self._indices)


class RowsTask(Task):
    """A task over a list of raw rows, read on first access by `load_rows` and kept."""

    @abstractmethod
    def load_rows(self) -> list:
        """Read the rows (raise MissingDataError if their files are not there)."""

    @cached_property
    def rows(self) -> list:
        return self.load_rows()

    def num_examples(self) -> int:
        return len(self.rows)


class TaskMixture(Task):
    """Examples of several tasks, shuffled together with a fixed seed (the same order every run).

    List a task twice to see its examples twice (e.g. a small identity file in a large mixture).
    """

    name = "mixture"

    def __init__(self, tasks: list[Task], seed: int = 42, **slice_args):
        if not tasks:
            raise ValueError("a TaskMixture needs at least one task")
        super().__init__(**slice_args)
        self.tasks, self.seed = tasks, seed

    @cached_property
    def _index_map(self) -> list[tuple[int, int]]:
        pairs = [(t, i) for t, task in enumerate(self.tasks) for i in range(len(task))]
        random.Random(self.seed).shuffle(pairs)
        return pairs

    def num_examples(self) -> int:
        return len(self._index_map)

    def get_example(self, index: int) -> Conversation:
        t, i = self._index_map[index]
        return self.tasks[t][i]

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        raise TypeError("evaluate a mixture's examples with the task they came from")


class TaskSequence(Task):
    """Examples of several tasks one after the other: all of the first task, then all of the second, ..."""

    name = "sequence"

    def __init__(self, tasks: list[Task], **slice_args):
        if not tasks:
            raise ValueError("a TaskSequence needs at least one task")
        super().__init__(**slice_args)
        self.tasks = tasks

    def num_examples(self) -> int:
        return sum(len(task) for task in self.tasks)

    def get_example(self, index: int) -> Conversation:
        for task in self.tasks:
            if index < len(task):
                return task[index]
            index -= len(task)
        raise IndexError("TaskSequence index out of range")

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        raise TypeError("evaluate a sequence's examples with the task they came from")


# ---------------------------------------------------------------------------------------------------------------
# multiple choice


LETTERS = "ABCDEFGHIJ"


def render_mc(question: str, letters: list[str], choices: list[str]) -> str:
    """The user prompt of a multiple-choice question. Each choice is followed by its letter ("- Paris=A"), so the
    letter the model must answer with appears in the prompt right after the text it stands for."""
    lines = [f"Multiple choice. {question.strip()}", ""]
    lines += [f"- {choice}={letter}" for letter, choice in zip(letters, choices)]
    lines += ["", "Answer with the letter of the correct choice and nothing else."]
    return "\n".join(lines)


def mc_conversation(question: str, choices: list[str], answer_index: int) -> Conversation:
    """A categorical conversation: the rendered question, the right letter as the assistant's answer."""
    letters = list(LETTERS[: len(choices)])
    messages: list[Message] = [
        {"role": "user", "content": render_mc(question, letters, choices)},
        {"role": "assistant", "content": letters[answer_index]},
    ]
    return {"messages": messages, "letters": letters}


class CategoricalTask(RowsTask):
    """A multiple-choice task: the response is one of the conversation's letters."""

    eval_type = EvalType.CATEGORICAL

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        if response not in conversation["letters"]:
            raise ValueError(f"{self.name}: {response!r} is not one of the letters {conversation['letters']}")
        return response == conversation["messages"][-1]["content"]

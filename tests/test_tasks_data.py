"""Every task on its fixture data (or its packaged data): schema, rendering, scoring, missing-data messages."""

import pytest

from fixtures.evals.layout import HERE, lay_task_data
from nanochat.tasks.arc import ARC
from nanochat.tasks.common import EvalType, MissingDataError, TaskMixture
from nanochat.tasks.customjson import CustomJSON
from nanochat.tasks.humaneval import HumanEval, extract_program
from nanochat.tasks.mmlu import MMLU
from nanochat.tasks.smoltalk import SmolTalk
from nanochat.tasks.spelling import SimpleSpelling, SpellingBee


@pytest.fixture
def task_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    return lay_task_data(tmp_path)


@pytest.fixture(scope="module")
def tokenizer():
    from nanochat.tokenizer import get_tokenizer

    return get_tokenizer()


def test_arc_is_multiple_choice_with_our_letters(task_data, tokenizer):
    task = ARC("ARC-Challenge", "test")
    assert task.eval_type == EvalType.CATEGORICAL and task.name == "ARC-Challenge"
    by_question = {c["messages"][0]["content"].split("\n")[0]: c for c in task}
    assert len(by_question) == 4
    numbered = next(c for q, c in by_question.items() if "plant" in q)  # labels 1-4 become A-D
    assert numbered["letters"] == ["A", "B", "C", "D"] and numbered["messages"][1]["content"] == "A"
    assert "- roots=A" in numbered["messages"][0]["content"]
    five = next(c for q, c in by_question.items() if "toy car" in q)
    assert five["letters"] == list("ABCDE")
    assert task.evaluate(numbered, "A") and not task.evaluate(numbered, "B")
    for conversation in task:
        tokenizer.render_conversation(conversation)


def test_mmlu_all_and_auxiliary_train(task_data):
    test = MMLU("all", "test")
    answers = {c["messages"][0]["content"].split("\n")[0]: c["messages"][1]["content"] for c in test}
    assert answers["Multiple choice. (elementary mathematics) What is 7 multiplied by 6?"] == "B"
    aux = MMLU("auxiliary_train", "train")
    assert len(aux) == 2 and {c["messages"][1]["content"] for c in aux} == {"B"}
    with pytest.raises(ValueError):
        MMLU("auxiliary_train", "test")


def test_smoltalk_and_customjson(task_data, tokenizer):
    talk = SmolTalk("train")
    assert {len(c["messages"]) for c in talk} == {2, 5}
    for conversation in talk:
        tokenizer.render_conversation(conversation)
    identity = CustomJSON(HERE / "identity.jsonl")
    assert [c["messages"][0]["content"] for c in identity] == ["Who are you?", "Who made you?"]
    mixture = TaskMixture([talk, identity, identity])
    assert len(mixture) == 6


def test_missing_data_is_one_line_with_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    cases = [(ARC("ARC-Easy"), "arc"), (MMLU(), "mmlu"), (SmolTalk(), "smoltalk")]
    for task, group in cases:
        with pytest.raises(MissingDataError) as e:
            task[0]
        assert "\n" not in str(e.value) and f"python -m nanochat.tasks.download {group}" in str(e.value)
    with pytest.raises(MissingDataError, match="missing data .*nothing.jsonl"):
        len(CustomJSON(tmp_path / "nothing.jsonl"))


def test_spelling_bee_counts_and_scores():
    task = SpellingBee(size=50, split="test")
    conversation = task[7]
    assert task[7] == conversation and SpellingBee(size=50, split="train")[7] != conversation  # seeded by split
    answer = conversation["messages"][1]["content"]
    first_line = answer.split("\n")[0]
    word = first_line.split()[1]
    letter = answer.split("'")[1]
    assert answer.endswith(f"#### {word.count(letter)}")
    assert task.evaluate(conversation, f"#### {word.count(letter)}")
    assert not task.evaluate(conversation, f"#### {word.count(letter) + 1}")
    assert len(task) == 50 and task.eval_type == EvalType.GENERATIVE


def test_simple_spelling():
    task = SimpleSpelling(size=10)
    conversation = task[3]
    word = conversation["messages"][0]["content"].removeprefix("Spell the word: ")
    assert conversation["messages"][1]["content"] == word + ":" + ",".join(word)
    assert task.evaluate(conversation, conversation["messages"][1]["content"] + "\n")
    assert not task.evaluate(conversation, word)


def test_extract_program():
    assert extract_program("Here:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_program("def f():\n    return 1") == "def f():\n    return 1"


def test_humaneval_broken_solution_fails():
    task = HumanEval()
    conversation = task[0]
    right = conversation["messages"][1]["content"]
    assert task.evaluate(conversation, right)
    broken = conversation["messages"][0]["content"] + "    return not " + right.split("return ")[-1]
    assert not task.evaluate(conversation, broken)
    assert not task.evaluate(conversation, "")


@pytest.mark.slow
def test_all_164_humaneval_canonical_solutions_pass():
    from concurrent.futures import ThreadPoolExecutor

    task = HumanEval(timeout=10.0)
    assert len(task) == 164
    with ThreadPoolExecutor(4) as pool:
        passed = list(pool.map(lambda c: task.evaluate(c, c["messages"][1]["content"]), task))
    failed = [task.rows[i]["task_id"] for i, ok in enumerate(passed) if not ok]
    assert failed == []

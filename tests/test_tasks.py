"""The task base (slicing, mixtures, sequences) and GSM8K: the contract other tools rely on."""

import pytest

from fixtures.evals.layout import lay_task_data, read_fixture
from nanochat.tasks.common import EvalType, MissingDataError, Task, TaskMixture, TaskSequence
from nanochat.tasks.gsm8k import GSM8K, extract_answer, row_to_conversation


class Numbers(Task):
    """n examples whose user message is the example's index."""

    name = "numbers"

    def __init__(self, n, tag="n", **slice_args):
        super().__init__(**slice_args)
        self.n, self.tag = n, tag

    def num_examples(self):
        return self.n

    def get_example(self, index):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return {"messages": [{"role": "user", "content": f"{self.tag}{index}"},
                             {"role": "assistant", "content": "ok"}]}

    def evaluate(self, conversation, response):
        return response == "ok"


def users(task):
    return [c["messages"][0]["content"] for c in task]


@pytest.fixture
def task_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    return lay_task_data(tmp_path)


def test_slicing_start_stop_step():
    assert users(Numbers(10, start=2, stop=9, step=3)) == ["n2", "n5", "n8"]
    assert len(Numbers(10, start=2, stop=9, step=3)) == 3
    assert len(Numbers(5, stop=100)) == 5  # stop past the end is clipped
    assert Numbers(10, step=2)[-1]["messages"][0]["content"] == "n8"
    with pytest.raises(IndexError):
        Numbers(3)[3]
    with pytest.raises(ValueError):
        Numbers(3, start=2, stop=1)


def test_mixture_is_a_deterministic_shuffle_of_everything():
    a, b = Numbers(5, "a"), Numbers(3, "b")
    mixed = users(TaskMixture([a, b]))
    assert sorted(mixed) == sorted(users(a) + users(b))
    assert mixed != users(a) + users(b)
    assert users(TaskMixture([Numbers(5, "a"), Numbers(3, "b")])) == mixed
    assert users(TaskMixture([a, b], seed=1)) != mixed
    assert len(TaskMixture([a, a])) == 10  # a task listed twice is seen twice
    assert len(TaskMixture([a, b], stop=4)) == 4


def test_sequence_plays_tasks_in_order():
    seq = TaskSequence([Numbers(2, "a"), Numbers(3, "b")])
    assert users(seq) == ["a0", "a1", "b0", "b1", "b2"]
    assert users(TaskSequence([Numbers(2, "a"), Numbers(3, "b")], start=1, step=2)) == ["a1", "b1"]


def test_extract_answer():
    assert extract_answer("so the total is 5.\n#### 1,234") == "1234"
    assert extract_answer("#### -7.5") == "-7.5"
    assert extract_answer("#### 42.") == "42"
    assert extract_answer("the answer is 42") is None
    assert extract_answer("#### none") is None


def test_row_to_conversation_turns_calculations_into_tool_calls():
    row = read_fixture("gsm8k.jsonl")[0]
    conversation = row_to_conversation(row)
    user, assistant = conversation["messages"]
    assert user == {"role": "user", "content": row["question"]}
    parts = assistant["content"]
    assert parts[:4] == [
        {"type": "text", "text": "The baker makes 12*8 = "},
        {"type": "python", "text": "12*8"},
        {"type": "python_output", "text": "96"},
        {"type": "text", "text": "96 rolls.\nAfter the morning sales there are 96-30 = "},
    ]
    assert parts[-1] == {"type": "text", "text": "66 rolls left.\n#### 66"}
    assert all(part["text"] for part in parts)


def test_rendered_gsm8k_trains_on_the_call_not_the_output():
    from nanochat.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    ids, mask = tokenizer.render_conversation(row_to_conversation(read_fixture("gsm8k.jsonl")[0]))
    out_start, out_end = tokenizer.encode_special("<|output_start|>"), tokenizer.encode_special("<|output_end|>")
    py_start = tokenizer.encode_special("<|python_start|>")
    assert mask[ids.index(py_start)] == 1
    inside = ids.index(out_start), ids.index(out_end)
    assert set(mask[inside[0]:inside[1] + 1]) == {0}
    assert tokenizer.decode(ids[inside[0] + 1:inside[1]]) == "96"


def test_gsm8k_evaluate_needs_no_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    task = GSM8K(split="test")  # constructing reads nothing
    conversation = row_to_conversation(read_fixture("gsm8k.jsonl")[2])
    assert task.evaluate(conversation, "400 red, so 800 are not.\n#### 800")
    assert task.evaluate(conversation, "#### 800.")
    assert not task.evaluate(conversation, "#### 400")
    assert not task.evaluate(conversation, "eight hundred")
    assert task.eval_type == EvalType.GENERATIVE == "generative"


def test_gsm8k_missing_data_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    with pytest.raises(MissingDataError) as e:
        len(GSM8K(split="train"))
    message = str(e.value)
    assert "\n" not in message
    assert "gsm8k/train.parquet" in message and "python -m nanochat.tasks.download gsm8k" in message


def test_gsm8k_reads_its_data(task_data):
    task = GSM8K(split="test")
    assert len(task) == 4
    questions = {row["question"] for row in read_fixture("gsm8k.jsonl")}
    assert {c["messages"][0]["content"] for c in task} == questions
    for conversation in task:  # every reference answer scores as right
        assert task.evaluate(conversation, "".join(p["text"] for p in conversation["messages"][1]["content"]))
    assert len(GSM8K(split="test", stop=2)) == 2
    with pytest.raises(ValueError):
        GSM8K(split="validation")

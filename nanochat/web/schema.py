"""The /chat/completions request: its typed schema, its limits, and the one error every broken request gets.

A request is JSON: {"messages": [{"role": ..., "content": ...}, ...], "temperature"?, "top_k"?, "max_tokens"?}.
Types are strict (a string is not a number, true is not 1); null or a missing optional field means the default.
The conversation is an optional leading system message, then user and assistant turns alternating, ending with
the user. Anything else raises `RequestError` with the field it is about ("messages[2].role", "temperature",
"body"), which the app answers with 400 {"error": message, "field": field}.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_BODY_BYTES = 1 << 20
MAX_MESSAGES = 500
MAX_MESSAGE_CHARS = 8_000
MAX_TOTAL_CHARS = 32_000
TEMPERATURE_RANGE = (0.0, 2.0)
TOP_K_RANGE = (0, 200)  # 0: sample from the whole vocabulary
MAX_TOKENS_RANGE = (1, 4096)
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 50
DEFAULT_MAX_TOKENS = 512


class Message(BaseModel):
    model_config = ConfigDict(strict=True)
    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class ChatRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    temperature: Annotated[float | None, Field(ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1])] = None
    top_k: Annotated[int | None, Field(ge=TOP_K_RANGE[0], le=TOP_K_RANGE[1])] = None
    max_tokens: Annotated[int | None, Field(ge=MAX_TOKENS_RANGE[0], le=MAX_TOKENS_RANGE[1])] = None


@dataclass(frozen=True)
class Sampling:
    """What the engine is asked for, defaults filled in."""
    temperature: float
    top_k: int
    max_tokens: int


@dataclass
class RequestError(Exception):
    """A request the server will not run: `field` is where the problem is, `message` says what it is."""
    field: str
    message: str

    def __str__(self):
        return f"{self.field}: {self.message}"


def field_name(loc: tuple) -> str:
    """pydantic's location ("messages", 2, "content") as "messages[2].content"; () is the body itself."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part in ("float", "int", "none", "str"):  # the branch of an `X | None` union, not a field
            continue
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def _first_error(e: ValidationError) -> RequestError:
    err = e.errors(include_url=False)[0]
    if err["type"] == "json_invalid":
        return RequestError("body", f"is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})")
    if err["type"] == "model_type" and not err["loc"]:
        return RequestError("body", "must be a JSON object with a \"messages\" list")
    field = field_name(err["loc"])
    return RequestError(field, err["msg"][0].lower() + err["msg"][1:])


def check_conversation(messages: list[Message]) -> None:
    """The rules between messages: roles in order, nothing empty, the total length."""
    offset = 1 if messages[0].role == "system" else 0
    for i, m in enumerate(messages):
        if not m.content.strip():
            raise RequestError(f"messages[{i}].content", "is empty")
        if i < offset:
            continue
        expected = "user" if (i - offset) % 2 == 0 else "assistant"
        if m.role != expected:
            where = "only the first message may be a system message" if m.role == "system" else \
                "turns alternate user, assistant, user, ... after an optional system message"
            raise RequestError(f"messages[{i}].role", f"is {m.role!r} but {expected!r} was expected: {where}")
    if messages[-1].role != "user":
        raise RequestError("messages", "the conversation must end with a user message")
    total = sum(len(m.content) for m in messages)
    if total > MAX_TOTAL_CHARS:
        raise RequestError("messages", f"the conversation holds {total} characters; at most {MAX_TOTAL_CHARS}")


def parse_chat_request(body: bytes) -> tuple[list[Message], Sampling]:
    """Validate a raw request body; returns the messages and the sampling settings, or raises RequestError."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError("body", f"is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        request = ChatRequest.model_validate_json(body)
    except ValidationError as e:
        raise _first_error(e) from None
    check_conversation(request.messages)
    sampling = Sampling(
        temperature=DEFAULT_TEMPERATURE if request.temperature is None else float(request.temperature),
        top_k=DEFAULT_TOP_K if request.top_k is None else request.top_k,
        max_tokens=DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
    )
    return request.messages, sampling

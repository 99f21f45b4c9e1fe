"""``/v1/embeddings`` request bodies, parsed into a typed record.

Shared by the gateway (which refuses bad input before spending a worker hop)
and the edge worker. OpenAI's shape: ``input`` is a string, an array of
strings, an array of token ids, or an array of such arrays (at most 2,048
inputs, none empty); ``encoding_format`` is ``float`` or ``base64`` (the
official SDK asks for base64 unless told otherwise); ``dimensions`` asks for
shorter vectors, which only models trained for it can give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from routing.capabilities import EMBEDDING_NEEDS, Needs
from routing.errors import InvalidRequest

# OpenAI's limit on inputs per request.
MAX_INPUTS = 2048
# Far beyond any embedding model's context: a longer input is refused before any tokenizer sees it.
MAX_INPUT_CHARS = 1_000_000
MAX_TOKEN_ID = 2**31 - 1
# Vectors longer than any embedding model makes: a larger ``dimensions`` is a mistake.
MAX_DIMENSIONS = 65_536

EncodingFormat = Literal["float", "base64"]
# One input: text, or token ids the model reads as they are.
EmbeddingInput = str | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[EmbeddingInput, ...]
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None

    # What the gateway's shared request path asks of every request.
    stream = False

    @property
    def needs(self) -> Needs:
        return EMBEDDING_NEEDS

    def largest_input_tokens(self, chars_per_token: int) -> int:
        """A low estimate of the longest input's tokens (the context each input must fit)."""
        return max(_estimated_tokens(i, chars_per_token) for i in self.inputs)

    def estimated_tokens(self, chars_per_token: int) -> int:
        """A low estimate of all inputs' tokens together (what a key's budget is charged before the answer)."""
        return sum(_estimated_tokens(i, chars_per_token) for i in self.inputs)


def _estimated_tokens(item: EmbeddingInput, chars_per_token: int) -> int:
    return len(item) // chars_per_token if isinstance(item, str) else len(item)


def parse_embedding_request(obj: dict[str, Any]) -> EmbeddingRequest:
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model' (a non-empty string).", param="model")
    encoding_format = obj.get("encoding_format", "float")
    if encoding_format is None:
        encoding_format = "float"
    if encoding_format not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = obj.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_DIMENSIONS
    ):
        raise InvalidRequest(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.", param="dimensions")
    return EmbeddingRequest(model, _inputs(obj.get("input")), encoding_format, dimensions)


def _inputs(raw: Any) -> tuple[EmbeddingInput, ...]:
    if raw is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(raw, str):
        return (_text(raw, "input"),)
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(
            "'input' must be a string, an array of strings, an array of token ids or an array of such arrays.",
            param="input",
        )
    if len(raw) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} inputs, got {len(raw)}.", param="input")
    if all(_is_token(t) for t in raw):
        return (tuple(raw),)  # one input, as token ids
    inputs: list[EmbeddingInput] = []
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if isinstance(item, str):
            inputs.append(_text(item, where))
        elif isinstance(item, list) and item and all(_is_token(t) for t in item):
            inputs.append(tuple(item))
        else:
            raise InvalidRequest(
                f"'{where}' must be a non-empty string or a non-empty array of token ids.", param="input"
            )
    return tuple(inputs)


def _text(text: str, where: str) -> str:
    if not text:
        raise InvalidRequest(f"'{where}' must not be empty.", param="input")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidRequest(f"'{where}' is longer than {MAX_INPUT_CHARS} characters.", param="input")
    return text


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID

"""Helpers every task's serving hooks share: request validation, size limits, text normalisation.

Hooks raise :class:`~miniml.errors.RequestError` (status, code, details); the server answers it as JSON.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from miniml.errors import RequestError

X = TypeVar("X")
M = TypeVar("M", bound=BaseModel)


class RequestLimits(Protocol):
    """The server's per-request limits (``limits:`` in the serve config)."""

    max_inputs: int
    max_chars: int


@dataclass(frozen=True, slots=True)
class Decoded(Generic[X]):
    """A validated request: one item per input, parameters for the response, input size for budgets."""

    items: list[X]
    params: Any
    chars: int


def normalize_text(text: str) -> str:
    """Unicode NFC and no surrounding whitespace: equal keys in the cache mean equal model inputs."""
    return unicodedata.normalize("NFC", text).strip()


def invalid_request(err: ValidationError) -> RequestError:
    """A pydantic validation error as a 422 naming each bad field."""
    errors = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in err.errors()[:10]
    ]
    first = errors[0]
    where = ".".join(first["loc"]) or "body"
    return RequestError(422, "invalid_request", f"{where}: {first['msg']}", errors=errors)


def parse_body(schema: type[M], body: bytes) -> M:
    """``schema`` validated from the raw JSON body in one pass (422 naming the bad fields)."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as err:
        raise invalid_request(err) from None


def check_sizes(texts: list[str], limits: RequestLimits) -> int:
    """Enforce inputs-per-request and characters-per-input limits (413 naming the limit); total chars."""
    if len(texts) > limits.max_inputs:
        raise RequestError(
            413,
            "too_many_inputs",
            f"{len(texts)} inputs in one request; the limit is {limits.max_inputs} (split the request)",
            limit="max_inputs",
            max=limits.max_inputs,
            got=len(texts),
        )
    chars = 0
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise RequestError(
                413,
                "input_too_long",
                f"inputs[{i}] has {len(text)} characters; the limit is {limits.max_chars} per input",
                limit="max_chars",
                max=limits.max_chars,
                got=len(text),
                index=i,
            )
        chars += len(text)
    return chars


class Float32Codec:
    """A vector (probabilities, a value, an embedding) as little-endian float32 bytes, for a shared cache."""

    def dumps(self, value: np.ndarray) -> bytes:
        return np.asarray(value, dtype="<f4").tobytes()

    def loads(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype="<f4")

"""HTTP errors of the server: every client mistake becomes a 4xx JSON body saying what was wrong.

Body shape (all routes)::

    {"error": {"code": "too_many_inputs", "message": "...", "request_id": "...", ...details}}
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from miniml.errors import RequestError

# An error answer: status, a stable machine-readable ``code``, a one-line message, extra details. Task hooks
# raise the same class under its core name (they know nothing of HTTP).
HTTPProblem = RequestError


class QueueFull(HTTPProblem):
    """The model's queue is full (503 + Retry-After)."""

    def __init__(self, model: str, retry_after: int) -> None:
        super().__init__(
            503,
            "queue_full",
            f"model {model!r} is at capacity; retry after {retry_after}s",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )


class Unavailable(HTTPProblem):
    """The model is loading or the server is shutting down (503 + Retry-After)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(
            503, "unavailable", message, headers={"Retry-After": str(retry_after)}, retry_after=retry_after
        )


class RequestTimeout(HTTPProblem):
    """The result did not come back within the request timeout (504)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            504,
            "timeout",
            f"no result within {timeout_s:g}s; retry later or send fewer inputs",
            timeout_s=timeout_s,
        )


def problem_body(code: str, message: str, request_id: str | None = None, **details: Any) -> bytes:
    """The JSON bytes of an error answer."""
    error: dict[str, Any] = {"code": code, "message": message, **details}
    if request_id:
        error["request_id"] = request_id
    return orjson.dumps({"error": error})


def problem_response(problem: HTTPProblem, request_id: str | None = None) -> Response:
    """An :class:`HTTPProblem` as a JSON response."""
    body = problem_body(problem.code, problem.message, request_id, **problem.details)
    return Response(body, status_code=problem.status, headers=problem.headers, media_type="application/json")

"""What one request did, for its access line and metrics: a typed object, set by the layers that know.

The observability middleware creates it (``request_id``) and keeps it under ``scope["miniml"]``; routing
sets ``route``, access control ``model`` and ``key``, the inference path ``inputs``, ``version`` (and the
texts when ``logging.log_inputs``). The middleware writes the access line from it when the answer is out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

SCOPE_KEY = "miniml"
_UNSET: Any = object()


@dataclass(slots=True)
class RequestInfo:
    """One request's facts (``None``: not known; ``key`` stays unset until access control ran)."""

    request_id: str
    route: str | None = None
    model: str | None = None
    key: str | None = _UNSET  # None once admitted without keys (keys off)
    version: int | None = None
    inputs: int | None = None
    texts: list[str] | None = None

    def fields(self) -> dict[str, Any]:
        """The access line's fields beyond method, path, status and latency."""
        out: dict[str, Any] = {}
        for name in ("route", "model", "key", "version", "inputs", "texts"):
            value = getattr(self, name)
            if (value is not None and value is not _UNSET) or (name == "key" and value is None):
                out[name] = value
        return out


def request_info(scope: Scope) -> RequestInfo | None:
    """The request's :class:`RequestInfo` (None outside the middleware, e.g. in unit tests)."""
    info: RequestInfo | None = scope.get(SCOPE_KEY)
    return info

"""Which version answers a request, and how often champion and challenger agree.

:class:`CanaryRouter` sends a ``share`` of requests to the challenger. The choice is a hash, not a coin:
``blake2b(token) / 2^64 < share`` where the token is the request id (``sticky: request``: a retry with the
same ``X-Request-ID`` gets the same version) or the API key's name (``sticky: key``: a client sees one
version throughout; with keys off, the request id again). Over many distinct tokens the challenger's share
converges to ``share``.

:class:`Agreement` counts, in shadow mode, the inputs on which the challenger's top answer equals the
champion's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Sticky = Literal["request", "key"]
CHAMPION, CHALLENGER = "champion", "challenger"


def unit_hash(token: str) -> float:
    """A stable, uniform number in [0, 1) for ``token``."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class CanaryRouter:
    """Route ``share`` of the traffic to the challenger (see the module docstring)."""

    share: float
    sticky: Sticky = "request"

    def role(self, request_id: str, key: str | None) -> str:
        """``challenger`` or ``champion`` for this request."""
        if self.share <= 0:
            return CHAMPION
        token = key if self.sticky == "key" and key else request_id
        return CHALLENGER if unit_hash(token) < self.share else CHAMPION


class Agreement:
    """Inputs compared between champion and shadow challenger, and how many had the same answer."""

    def __init__(self) -> None:
        self.compared = 0
        self.agreed = 0

    def add(self, champion: list[str], challenger: list[str]) -> None:
        for a, b in zip(champion, challenger, strict=True):
            self.compared += 1
            self.agreed += a == b

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

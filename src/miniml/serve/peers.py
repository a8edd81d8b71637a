"""The other replicas of a scaled-out server, for the routes that answer for all of them.

On Ray Serve (:mod:`miniml.backends.ray.replica`) every replica runs its own app, and the proxy hands
``GET /metrics`` and ``GET /readyz`` to whichever replica it picks. So each replica reports its status and its
metrics text to a board shared by the replicas of its application (:class:`Peers`): every ``period_s``, and
on each of those two requests. The answering replica then returns what the board holds of every replica
heard from within the board's staleness bound: the union of their metrics (:func:`merge_expositions`), and
how many of them are ready. The local server has no peers; its routes answer for its own process.

A board that does not answer within :data:`EXCHANGE_TIMEOUT_S` never fails a request: the replica answers
for itself, as the local server does, and logs a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("miniml.serve")
EXCHANGE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Report:
    """What the board holds of one replica."""

    replica: str
    status: str  # loading | ready | draining | failed: <reason>
    text: str  # its last metrics exposition ("" when not asked for)
    age_s: float  # since the board last heard from it


class Peers(Protocol):
    """The board of the replicas of one application, as one replica sees it."""

    @property
    def replica(self) -> str:
        """This replica's id."""
        ...

    @property
    def period_s(self) -> float:
        """How often this replica reports (the board drops a replica after a few periods of silence)."""
        ...

    async def exchange(self, status: str, text: str | None, *, taken: float, fetch: bool) -> list[Report]:
        """Report this replica (``text`` None: keep the last one; ``taken``: this process's monotonic clock
        when status and text were read, so the board keeps the newest); every live replica's report when
        ``fetch`` (texts included), else none."""
        ...

    async def leave(self) -> None:
        """This replica stops: the board forgets it now rather than after the staleness bound."""
        ...


async def exchange(
    peers: Peers, status: str, text: str | None, *, taken: float, fetch: bool
) -> list[Report] | None:
    """:meth:`Peers.exchange` that never raises: None when the board failed or did not answer in time."""
    try:
        call = peers.exchange(status, text, taken=taken, fetch=fetch)
        return await asyncio.wait_for(call, EXCHANGE_TIMEOUT_S)
    except Exception as err:  # the board restarting (its node died), a timeout: answer for this replica
        log.warning(
            "replica board did not answer",
            extra={"fields": {"replica": peers.replica, "error": f"{type(err).__name__}: {err}"[:300]}},
        )
        return None


def merge_expositions(texts: Iterable[str]) -> str:
    """One Prometheus text exposition from several: each family's ``# HELP`` and ``# TYPE`` once, followed by
    every text's samples of it (families in order of first appearance). The texts are the replicas' own
    (``generate_latest``: a family's header lines, then its samples), and their series differ by the
    ``replica`` label; a series found twice keeps its first sample (Prometheus refuses duplicates)."""
    headers: dict[str, dict[str, str]] = {}  # family -> {"HELP": line, "TYPE": line}
    samples: dict[str, dict[str, str]] = {}  # family -> {series: line}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                parts = line.split(" ", 3)
                family = parts[2]
                headers.setdefault(family, {}).setdefault(parts[1], line)
                samples.setdefault(family, {})
            elif line and not line.startswith("#"):
                series = line.rsplit(" ", 1)[0]
                samples.setdefault(family, {}).setdefault(series, line)
    lines: list[str] = []
    for family, found in samples.items():
        head = headers.get(family, {})
        lines.extend(head[kind] for kind in ("HELP", "TYPE") if kind in head)
        lines.extend(found.values())
    return "\n".join(lines) + "\n" if lines else ""


def readiness(reports: Iterable[Report]) -> dict[str, str]:
    """Replica id → status, sorted by id."""
    return {r.replica: r.status for r in sorted(reports, key=lambda r: r.replica)}

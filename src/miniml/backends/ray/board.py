"""The replica board of a ``miniml serve --backend ray`` application: every replica's status and metrics.

Ray's proxy hands ``GET /metrics`` and ``GET /readyz`` to one replica of the ingress deployment, so no replica
can answer for the others by itself. The board is a second deployment of the same application (one replica,
no CPU reserved: :func:`board_options`), bound into the ingress and reached through its
``DeploymentHandle`` (Serve's public composition API). Being part of the application, it starts, is
health-checked and replaced, and is deleted with it, also under ``serve deploy`` or a KubeRay
``RayService``.

Each ingress replica reports to it every :data:`REPORT_PERIOD_S` and on each scrape (:class:`BoardPeers`,
the :class:`~miniml.serve.peers.Peers` of :mod:`miniml.serve.peers`); a replica not heard from within
:data:`STALE_S` (a replica that was killed) is dropped, one that stops says so and is dropped at once.
Alternatives considered: Ray's own metrics export (``ray.serve.metrics``) renames every series
(``ray_`` prefix, Ray's tags) and is scraped per node from Ray's metrics agent, not from the app's
``/metrics``; Serve has no public way to call one chosen replica.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from miniml.serve.peers import Report

BOARD = "MinimlBoard"
REPORT_PERIOD_S = 5.0
STALE_S = 3 * REPORT_PERIOD_S  # three missed reports: the replica is gone
MAX_TEXT_CHARS = 8 * 1024 * 1024  # one replica's exposition; more is refused, not stored


@dataclass
class Said:
    """One replica on the board: when it was last heard from, and its newest status and text."""

    heard: float
    status_taken: float
    status: str
    text_taken: float
    text: str


class ReplicaBoard:
    """The deployment's user class: what each replica reported last, and when.

    Reports can arrive out of order (a periodic one overtaken by a scrape's), so each carries ``taken``, the
    replica's clock when it read its status and rendered its text; an older one never replaces a newer one
    (a counter that went back would look like a restart to Prometheus)."""

    def __init__(self, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        self.replicas: dict[str, Said] = {}

    def exchange(
        self, replica: str, status: str, text: str | None, taken: float, fetch: bool
    ) -> list[tuple[Any, ...]]:
        """Record ``replica`` (``text`` None: keep its last one); with ``fetch``, every live replica as
        ``(replica, status, text, age_s)`` rows, the caller's first."""
        if text is not None and len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"metrics text of {len(text)} chars is over {MAX_TEXT_CHARS}")
        now = time.monotonic()
        said = self.replicas.get(replica) or Said(now, -math.inf, "", -math.inf, "")
        said.heard = now
        if taken >= said.status_taken:
            said.status_taken, said.status = taken, status[:300]
        if text is not None and taken >= said.text_taken:
            said.text_taken, said.text = taken, text
        self.replicas[replica] = said
        self.replicas = {r: v for r, v in self.replicas.items() if now - v.heard <= self.stale_s}
        if not fetch:
            return []
        order = sorted(self.replicas, key=lambda r: (r != replica, r))
        return [
            (r, self.replicas[r].status, self.replicas[r].text, now - self.replicas[r].heard) for r in order
        ]

    def leave(self, replica: str) -> None:
        self.replicas.pop(replica, None)

    def check_health(self) -> None:
        """Serve's health check: the board only holds a dict (nothing to go wrong but the process)."""


def board_options(graceful_timeout_s: float) -> dict[str, Any]:
    """``serve.deployment`` options of the board: one replica, no CPU (it must never take a replica's)."""
    return {
        "name": BOARD,
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 0},
        "max_ongoing_requests": 1000,  # reports are dict updates; never make a replica wait behind others
        "graceful_shutdown_timeout_s": graceful_timeout_s,
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
    }


class BoardPeers:
    """The board through its ``DeploymentHandle``, for one ingress replica (a :class:`Peers`)."""

    def __init__(self, handle: Any, replica: str, period_s: float = REPORT_PERIOD_S) -> None:
        self.handle, self._replica, self._period_s = handle, replica, period_s

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def period_s(self) -> float:
        return self._period_s

    async def exchange(self, status: str, text: str | None, *, taken: float, fetch: bool) -> list[Report]:
        rows = await self.handle.exchange.remote(self._replica, status, text, taken, fetch)
        return [Report(str(r), str(s), str(t), float(a)) for r, s, t, a in rows]

    async def leave(self) -> None:
        await self.handle.leave.remote(self._replica)

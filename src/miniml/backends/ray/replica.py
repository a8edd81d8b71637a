"""One Ray Serve replica of ``miniml serve``: the local server's FastAPI app, built inside the replica.

Ray Serve calls :meth:`MinimlReplica.__serve_build_asgi_app__` after the constructor (``@serve.ingress()``
without an app: the app is built where it runs, never pickled) and runs the app's lifespan, which loads the
models and starts their batchers exactly as ``miniml serve`` does in one process. Ray's proxy hands every
HTTP request to a replica's app as ASGI; routes, auth, limits, cache, errors and metrics are the app's own.

:mod:`.serving` wraps this class with ``serve.ingress`` and ``serve.deployment``. Every metric of a replica
carries a ``replica`` label (its Ray Serve id), so series from several replicas never collide; the app's
``/metrics`` and ``/readyz`` answer for every replica through the application's board (:mod:`.board`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI

from miniml.backends.ray.board import BoardPeers
from miniml.backends.ray.cluster import apply_env
from miniml.serve.app import create_app
from miniml.serve.logs import configure_logging
from miniml.serve.settings import ServeSettings

log = logging.getLogger("miniml.serve")


def replica_settings(settings: ServeSettings) -> ServeSettings:
    """The settings one replica runs with: its torch threads are the CPUs it reserved (unless set)."""
    if settings.batching.threads is not None:
        return settings
    threads = max(1, int(settings.backend.cpus_per_replica))
    batching = settings.batching.model_copy(update={"threads": threads})
    return settings.model_copy(update={"batching": batching})


def replica_id() -> str:
    """This replica's id in Ray Serve (the ``replica`` label of its metrics)."""
    from ray import serve

    return str(serve.get_replica_context().replica_id.unique_id)


class MinimlReplica:
    """The deployment's user class: holds the settings; the app (and its models) live in the replica."""

    def __init__(self, settings_json: str, env: dict[str, str], board: Any = None) -> None:
        """``board``: the ``DeploymentHandle`` of the application's :class:`~.board.ReplicaBoard`."""
        apply_env(env)  # the deploying command's MINIML_HOME, tracking URI, offline mode ...
        self.settings = replica_settings(ServeSettings.model_validate_json(settings_json))
        configure_logging(self.settings.logging)
        self.served: FastAPI | None = None
        self.board = board

    def __serve_build_asgi_app__(self) -> FastAPI:
        self.served = create_app(self.settings)
        replica = replica_id()
        state = self.served.state.miniml
        state.metrics.label_every_series("replica", replica)
        if self.board is not None:
            state.peers = BoardPeers(self.board, replica)
        log.info("replica starting", extra={"fields": {"replica": replica, "pid": os.getpid()}})
        return self.served

    def check_health(self) -> None:
        """Ray Serve's health check: a replica that stopped serving is replaced (loading is healthy)."""
        if self.served is None:
            return
        status = self.served.state.miniml.status
        if status not in ("loading", "ready"):
            raise RuntimeError(f"replica is {status}")

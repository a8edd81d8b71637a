"""The server's state, built once per app: settings, metrics, access control, served models, access log.

Routes get it with ``Depends(get_state)``; tests can swap it with ``app.dependency_overrides``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.requests import Request

from miniml.monitor.canary import CHAMPION
from miniml.runtime.loaded import LoadedModel
from miniml.serve.access import Access
from miniml.serve.engine import ModelSet, load_models
from miniml.serve.logs import AccessLog
from miniml.serve.metrics import ServeMetrics
from miniml.serve.monitoring import MonitorCollector, Monitoring
from miniml.serve.peers import EXCHANGE_TIMEOUT_S, Peers, exchange
from miniml.serve.protocol import ConnectionStats
from miniml.serve.rollout import Loaded, Rollouts, load_challengers
from miniml.serve.semantic import SemanticCache, load_embedder
from miniml.serve.settings import ServeSettings
from miniml.tasks.base import ServingHooks

log = logging.getLogger("miniml.serve")


class ServerState:
    """Everything a request needs; ``start``/``stop`` run in the app's lifespan."""

    def __init__(
        self,
        settings: ServeSettings,
        *,
        preloaded: list[tuple[LoadedModel, ServingHooks]] | None = None,
        challengers: dict[str, Loaded] | None = None,
        embedder: LoadedModel | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = ServeMetrics()
        self.connections = ConnectionStats(on_refuse=self.metrics.count_refusal)
        self.metrics.watch_connections(self.connections)
        self.models = ModelSet(settings, self.metrics)
        self.metrics.watch_runtime(lambda: self.models)
        self.access = Access(settings, self.metrics, self.models)
        self.monitoring = Monitoring(settings)
        self.metrics.registry.register(MonitorCollector(self.monitoring))
        self.rollouts = Rollouts(settings, self.metrics, self.monitoring)
        self._challengers = challengers
        self.access_log = AccessLog(settings.logging.access_log)
        self.status = "loading"
        self._tasks: list[asyncio.Task[None]] = []
        self._preloaded = preloaded
        self._embedder = embedder  # the semantic cache's (loaded in start when not given)
        self.semantic: SemanticCache | None = None
        self.peers: Peers | None = None  # the other replicas (Ray Serve): set before the lifespan starts

    async def start(self) -> None:
        """Load models (unless preloaded) off the event loop, start batchers and alias followers; with peers,
        report to their board while loading, when ready (then every period) and when loading failed."""
        if self.peers is None:
            await self._start()
            return
        loading = asyncio.create_task(self._say(self.peers, self.status), name="peers-loading")
        self._tasks.append(loading)  # not awaited: the board may still be starting
        try:
            await self._start()
        except BaseException as err:
            loading.cancel()
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            await self._say(self.peers, f"failed: {reason}")
            raise
        self._tasks.append(asyncio.create_task(self._report(self.peers), name="peers"))

    @staticmethod
    async def _say(peers: Peers, status: str) -> None:
        await exchange(peers, status, None, taken=time.monotonic(), fetch=False)

    async def _report(self, peers: Peers) -> None:
        """Report status and metrics to the peers' board every period (and the drift verdicts with them)."""
        while True:
            try:
                await self.monitoring.refresh()
                taken = time.monotonic()
                await exchange(peers, self.status, self.metrics.render().decode(), taken=taken, fetch=False)
            except Exception:  # a bug in a collector must not stop the reports (scrapes would show it)
                log.exception("reporting to the replica board failed")
            await asyncio.sleep(peers.period_s)

    async def _start(self) -> None:
        loaded = self._preloaded
        if loaded is None:
            loaded = await asyncio.to_thread(load_models, self.settings)
        self._preloaded = None
        challengers = self._challengers
        if challengers is None:
            challengers = await asyncio.to_thread(load_challengers, self.settings)
        self._challengers = None
        semantic = self.settings.cache.semantic
        if semantic is not None:
            embedder = self._embedder
            if embedder is None:
                embedder = await asyncio.to_thread(load_embedder, semantic, self.settings.device)
            self.semantic = self.models.semantic = SemanticCache(semantic, embedder, self.metrics)
            self.semantic.start()
            self._embedder = None
        await self.models.start(loaded)
        for served in self.models:
            self.monitoring.prepare(served.current, CHAMPION)
        self.rollouts.start(self.models, challengers)
        self.access.loading = False
        self.access_log.start()
        if self.access.keys_watcher is not None:
            self._tasks.append(asyncio.create_task(self.access.keys_watcher.run(), name="keys-watcher"))
        if self.access.shared_watcher is not None:
            self._tasks.append(asyncio.create_task(self.access.shared_watcher.run(), name="shared-keys"))
        self.status = "ready"

    async def stop(self) -> None:
        """Drain queued batches, stop followers, release connections."""
        self.status = "draining"
        for job in self._tasks:
            job.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.peers is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.peers.leave(), EXCHANGE_TIMEOUT_S)
        await self.rollouts.stop()
        await self.models.stop()
        if self.semantic is not None:
            await self.semantic.close()
        await self.monitoring.close()
        await self.access.close()
        await self.access_log.stop()


async def get_state(request: Request) -> ServerState:
    """The app's :class:`ServerState` (a FastAPI dependency; async so FastAPI does not use a thread)."""
    state: ServerState = request.app.state.miniml
    return state

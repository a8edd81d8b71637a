"""The server's state, built once per app: settings, keys, rate limiter, metrics, served models.

Routes get it with ``Depends(get_state)``; tests can swap it with ``app.dependency_overrides``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request

from miniml.runtime.loaded import LoadedModel
from miniml.serve.auth import KeyStore, KeysWatcher, presented_key
from miniml.serve.engine import ModelSet, ServedModel, load_models
from miniml.serve.errors import HTTPProblem, Unavailable
from miniml.serve.logs import AccessLog
from miniml.serve.metrics import ServeMetrics
from miniml.serve.protocol import ConnectionStats
from miniml.serve.ratelimit import RateLimited, RateLimiter
from miniml.serve.settings import ApiKeyRecord, ServeSettings
from miniml.tasks.base import ServingHooks

log = logging.getLogger("miniml.serve")
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="miniml"'}


class ServerState:
    """Everything a request needs; ``start``/``stop`` run in the app's lifespan."""

    def __init__(
        self,
        settings: ServeSettings,
        *,
        preloaded: list[tuple[LoadedModel, ServingHooks]] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = ServeMetrics()
        self.connections = ConnectionStats(on_refuse=self.metrics.count_refusal)
        self.metrics.watch_connections(self.connections)
        auth = settings.auth
        # The watcher notes the file's signature before the first read: a change in between is not missed.
        self.keys_watcher = (
            KeysWatcher(auth.keys_file, auth.reload_s, self.use_keys) if auth.keys_file else None
        )
        self.keys = KeyStore.from_settings(auth, host=settings.server.host)
        self.limiter = RateLimiter(settings.ratelimit)
        self.limiter.register(self.keys.records)
        self._tasks: list[asyncio.Task[None]] = []
        self.models = ModelSet(settings, self.metrics)
        self.metrics.watch_runtime(lambda: self.models)
        self.open_routes = frozenset(settings.auth.open_routes)
        self.access_log = AccessLog(settings.logging.access_log)
        self.status = "loading"
        self._preloaded = preloaded
        if not self.keys.enabled:
            log.warning("API keys are off: every client may call every model (configure auth.keys_file)")

    async def start(self) -> None:
        """Load models (unless preloaded) off the event loop, start batchers and alias followers."""
        loaded = self._preloaded
        if loaded is None:
            loaded = await asyncio.to_thread(load_models, self.settings)
        self._preloaded = None
        await self.models.start(loaded)
        self.access_log.start()
        if self.keys_watcher is not None:
            self._tasks.append(asyncio.create_task(self.keys_watcher.run(), name="keys-watcher"))
        self.status = "ready"

    async def stop(self) -> None:
        """Drain queued batches, stop followers, release connections."""
        self.status = "draining"
        for job in self._tasks:
            job.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.models.stop()
        await self.limiter.close()
        await self.access_log.stop()

    def use_keys(self, file_records: list[ApiKeyRecord]) -> None:
        """Serve with the keys file's new records (plus ``auth.keys``) from the next request on."""
        records = [*file_records, *self.settings.auth.keys]
        enabled = self.settings.auth.enabled
        if enabled is None:  # automatic: on as soon as a key exists, and never off again once on
            enabled = self.keys.enabled or bool(records)
        store = KeyStore(records, enabled=enabled, allow_empty=True)
        before = {r.name: r for r in self.keys.records}
        after = {r.name: r for r in store.records}
        self.limiter.register(store.records)
        self.keys = store  # one assignment: a request sees the old or the new keys, never a mix
        changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
        fields = {
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
        }
        log.info("API keys reloaded", extra={"fields": {**fields, "changed": changed, "keys": len(after)}})

    def reload_keys_soon(self) -> None:
        """Re-read the keys file now (SIGHUP); a no-op without one."""
        if self.keys_watcher is not None:
            self.keys_watcher.wake()

    def authenticate(self, request: Request) -> ApiKeyRecord | None:
        """The caller's key record (None when keys are off); 401 without a valid key."""
        if not self.keys.enabled:
            return None
        key = presented_key(request.headers)
        if key is None:
            raise HTTPProblem(
                401,
                "missing_api_key",
                "send an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers=UNAUTHORIZED_HEADERS,
            )
        record = self.keys.authenticate(key)
        if record is None:
            raise HTTPProblem(
                401, "invalid_api_key", "the API key is not valid", headers=UNAUTHORIZED_HEADERS
            )
        return record

    async def admit(self, request: Request, name: str) -> tuple[ServedModel, str]:
        """Auth (401), model lookup (404/503), access (403), request budget (429) → (model, caller)."""
        record = self.authenticate(request)
        served = self.models.get(name)
        if served is None:
            if self.status == "loading":
                raise Unavailable("models are still loading; retry shortly")
            raise HTTPProblem(
                404, "model_not_found", f"no model named {name!r} is served; GET /v1/models lists them"
            )
        info = request.scope.get("miniml")
        if info is not None:  # before the checks below: a 403 or 429 access line names model and key too
            info["model"] = name
            info["key"] = record.name if record is not None else None
        if record is not None and not record.allows(name):
            raise HTTPProblem(403, "forbidden", f"key {record.name!r} may not use model {name!r}")
        who = record.name if record is not None else f"ip:{request.client.host if request.client else '-'}"
        if self.limiter.active:
            await self.spend(self.limiter.spend_request(who))
        return served, who

    async def spend(self, spending: Any) -> None:
        """Await a rate-limit spend, counting refusals."""
        try:
            await spending
        except RateLimited as err:
            key = "anonymous" if err.who.startswith("ip:") else err.who  # bounded label values
            if key != "anonymous" and not self.settings.ratelimit.metric_key_names:
                key = "*"  # /metrics is often open: key names are not for everyone
            self.metrics.rate_limited.labels(key, err.budget).inc()
            raise


async def get_state(request: Request) -> ServerState:
    """The app's :class:`ServerState` (a FastAPI dependency; async so FastAPI does not use a thread)."""
    state: ServerState = request.app.state.miniml
    return state

"""Access control, in one place: who is calling (authenticate), may they use this model now (admit), and
their budgets (spend). Every route goes through it; the keys follow the keys file (and the keys shared
through Redis) while the server runs.

- ``authenticate``: the caller's key record from ``Authorization: Bearer KEY`` or ``X-API-Key`` (401);
  None when keys are off.
- ``admit``: model lookup (404; 503 while loading), the key's allowed models (403), the request budget
  (429 + Retry-After), for a caller authenticated once. The access line learns the model and key here, so
  refusals name them too.
- ``spend_chars``: the input-character budget, charged once the body is decoded.
- ``reserve_tokens``: the generation token budget: a request's prompt tokens plus its ``max_new_tokens``
  per row are reserved before it is queued (429 + Retry-After when they do not fit); when its job ends the
  unused part goes back (:meth:`TokenReservation.settle`: all of it when the job never ran). The answer
  carries the key's ``x-ratelimit-*`` headers.
- ``check_open``: operations routes (health, metrics) need a key unless listed in ``auth.open_routes``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from miniml.serve.auth import KeyStore, KeysWatcher, presented_key
from miniml.serve.engine import ModelSet, ServedModel
from miniml.serve.errors import HTTPProblem, QueueFull, Unavailable
from miniml.serve.metrics import ServeMetrics
from miniml.serve.ratelimit import RateLimited, RateLimiter
from miniml.serve.requestinfo import request_info
from miniml.serve.settings import ApiKeyRecord, ServeSettings
from miniml.serve.sharedkeys import SharedKeysWatcher, read_shared_keys

log = logging.getLogger("miniml.serve")
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="miniml"'}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: their key record (None when keys are off) and the name budgets are kept under."""

    record: ApiKeyRecord | None
    who: str


@dataclass(slots=True)
class TokenReservation:
    """A request's reserved tokens (prompt + max_new_tokens per row) and its key's ``x-ratelimit-*``."""

    limiter: RateLimiter
    who: str
    reserved: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def settle(self, job: asyncio.Future[Any]) -> None:
        """Done-callback of the request's job: give back what it did not use (all when it never ran)."""
        if not self.reserved:
            return
        if job.cancelled():
            unused = 0  # it may have run: keep the reservation
        elif job.exception() is not None:
            unused = self.reserved if isinstance(job.exception(), QueueFull | Unavailable) else 0
        else:
            _, outputs = job.result()
            unused = self.reserved - sum(o.prompt_tokens + o.completion_tokens for o in outputs)
        if unused > 0:
            refund = asyncio.ensure_future(self.limiter.refund_tokens(self.who, unused))
            _REFUNDS.add(refund)
            refund.add_done_callback(_REFUNDS.discard)


_REFUNDS: set[asyncio.Future[None]] = set()  # refunds in flight (a reference keeps each task alive)


class Access:
    """Keys, budgets and the rules that use them (see the module docstring)."""

    def __init__(self, settings: ServeSettings, metrics: ServeMetrics, models: ModelSet) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models = models
        auth = settings.auth
        # The watcher notes the file's signature before the first read: a change in between is not missed.
        self.keys_watcher = (
            KeysWatcher(auth.keys_file, auth.reload_s, self.use_keys) if auth.keys_file else None
        )
        self.shared_watcher: SharedKeysWatcher | None = None
        shared: list[ApiKeyRecord] = []
        if auth.keys_redis:  # read with its version: a publish in between is seen by the watcher
            version, shared = read_shared_keys(auth.keys_redis, prefix=auth.keys_redis_prefix)
            self.shared_watcher = SharedKeysWatcher(
                auth.keys_redis, auth.keys_redis_prefix, auth.reload_s, version, self.use_shared_keys
            )
        self.keys = KeyStore.from_settings(auth, host=settings.server.host, shared=shared)
        self.limiter = RateLimiter(settings.ratelimit)
        self.limiter.register(self.keys.records)
        self.open_routes = frozenset(auth.open_routes)
        self.loading = True  # until the models are in: unknown names answer 503, not 404
        if not self.keys.enabled:
            log.warning("API keys are off: every client may call every model (configure auth.keys_file)")

    # ---------------------------------------------------------------- keys
    def use_keys(self, file_records: list[ApiKeyRecord]) -> None:
        """Serve with the keys file's new records (plus the shared ones and ``auth.keys``) from the next
        request on."""
        self._use(file_records, self.keys.from_redis)

    def use_shared_keys(self, shared: list[ApiKeyRecord]) -> None:
        """Serve with the new shared keys from Redis (plus the file's and ``auth.keys``)."""
        self._use(self.keys.from_file, shared)

    def _use(self, file_records: list[ApiKeyRecord], shared: list[ApiKeyRecord]) -> None:
        records = [*file_records, *shared, *self.settings.auth.keys]
        enabled = self.settings.auth.enabled
        if enabled is None:  # automatic: on as soon as a key exists, and never off again once on
            enabled = self.keys.enabled or bool(records)
        store = KeyStore(records, enabled=enabled, allow_empty=True)
        store.from_file, store.from_redis = file_records, shared
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
        """Re-read the keys file and the shared keys now (SIGHUP); a no-op without them."""
        if self.keys_watcher is not None:
            self.keys_watcher.wake()
        if self.shared_watcher is not None:
            self.shared_watcher.wake()

    # ---------------------------------------------------------------- rules
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

    async def admit(
        self, request: Request, name: str, record: ApiKeyRecord | None
    ) -> tuple[ServedModel, Caller]:
        """Model (404; 503 while loading), the key's models (403), request budget (429) → the served model
        and the caller. ``record`` is what :meth:`authenticate` returned (once per request)."""
        served = self.models.get(name)
        if served is None:
            if self.loading:
                raise Unavailable("models are still loading; retry shortly")
            raise HTTPProblem(
                404, "model_not_found", f"no model named {name!r} is served; GET /v1/models lists them"
            )
        info = request_info(request.scope)
        if info is not None:  # before the checks below: a 403 or 429 access line names model and key too
            info.model = name
            info.key = record.name if record is not None else None
        if record is not None and not record.allows(name):
            raise HTTPProblem(403, "forbidden", f"key {record.name!r} may not use model {name!r}")
        who = record.name if record is not None else f"ip:{request.client.host if request.client else '-'}"
        if self.limiter.active:
            await self.spend(self.limiter.spend_request(who))
        return served, Caller(record, who)

    async def spend_chars(self, caller: Caller, chars: int) -> None:
        """Charge the input-character budget (429 when spent)."""
        if self.limiter.active:
            await self.spend(self.limiter.spend_chars(caller.who, chars))

    async def reserve_tokens(self, caller: Caller, tokens: int) -> TokenReservation:
        """Reserve ``tokens`` of the caller's token budget (429 when they do not fit); the reservation
        carries the key's ``x-ratelimit-*`` headers and gives back the unused part when settled."""
        reservation = TokenReservation(self.limiter, caller.who)
        if self.limiter.active:
            reservation.reserved = await self.spend(self.limiter.spend_tokens(caller.who, tokens))
            reservation.headers = await self.limiter.headers(caller.who)
        return reservation

    async def spend(self, spending: Any) -> Any:
        """Await a rate-limit spend (returning what it returns), counting refusals."""
        try:
            return await spending
        except RateLimited as err:
            key = "anonymous" if err.who.startswith("ip:") else err.who  # bounded label values
            if key != "anonymous" and not self.settings.ratelimit.metric_key_names:
                key = "*"  # /metrics is often open: key names are not for everyone
            self.metrics.rate_limited.labels(key, err.budget).inc()
            raise

    def check_open(self, request: Request) -> None:
        """Operations routes need a key unless listed in ``auth.open_routes``."""
        if request.scope["path"] not in self.open_routes:
            self.authenticate(request)

    def allowed(self, record: ApiKeyRecord | None, name: str) -> bool:
        """Whether ``record`` may see model ``name`` (every model when keys are off)."""
        return record is None or record.allows(name)

    async def close(self) -> None:
        await self.limiter.close()

"""The bounded store of served predictions that feedback joins, by request id.

A :class:`PredictionRecord` is what a request was answered with: the request id (its ``X-Request-ID``), the
served name, the API key's name, the inputs (unless the server keeps none) and, per role (``champion``,
``challenger`` in canary or shadow mode), the version and its per-input outputs (labels, or generated texts).

Three backends behind one protocol, as for the response cache:

- :class:`MemoryPredictions` (default): an ordered dict holding the last ``max_entries`` records,
  each found for ``ttl_s``; touched from the event loop only. (Not ``cachetools.TTLCache``: its bookkeeping
  costs several microseconds per put, on every request.)
- :class:`RedisPredictions`: one key per request (``SET ... PX ttl``), so a replica can take the feedback of a
  request another replica answered; bounded by the TTL (and Redis's own ``maxmemory`` policy).
- :class:`PostgresPredictions`: a ``miniml_predictions`` table (request id, expiry, JSONB record); expired
  rows are deleted and rows beyond ``max_entries`` (oldest first) trimmed every ``cleanup_s``.

Remote writes never wait on the request path: ``put`` queues the record and a background task writes every
queued record in one pipeline / one ``executemany`` a few milliseconds later; ``get`` looks at the queue
first, so feedback sent right after the answer still finds it. A failing store loses records (logged once
per 10 s), never a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

log = logging.getLogger("miniml.monitor")
FLUSH_S = 0.005
MAX_PENDING = 100_000


@dataclass(slots=True)
class Answer:
    """One role's answer to a request."""

    version: int | None
    outputs: list[str]


@dataclass(slots=True)
class PredictionRecord:
    """What a request was answered with (see the module docstring)."""

    request_id: str
    model: str
    key: str | None
    inputs: list[str] | None
    answers: dict[str, Answer] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    labelled: list[int] = field(default_factory=list)  # input indexes that received feedback

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, data: str | bytes) -> PredictionRecord:
        raw = json.loads(data)
        raw["answers"] = {role: Answer(**a) for role, a in raw["answers"].items()}
        return cls(**raw)


class PredictionStore(Protocol):
    """Where served predictions wait for their feedback."""

    def put(self, record: PredictionRecord) -> None:
        """Keep (or replace) ``record``; never blocks."""
        ...

    async def get(self, request_id: str) -> PredictionRecord | None: ...

    async def close(self) -> None: ...


class MemoryPredictions:
    """In-process: the last ``max_entries`` records, each found for ``ttl_s`` (the default store)."""

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 86_400) -> None:
        self._data: OrderedDict[str, PredictionRecord] = OrderedDict()
        self.max_entries = max_entries
        self.ttl_s = ttl_s

    def __len__(self) -> int:
        return len(self._data)

    def put(self, record: PredictionRecord) -> None:
        data = self._data
        rid = record.request_id
        if rid in data:
            data.move_to_end(rid)  # a re-put (feedback, shadow answer) counts as the newest
        data[rid] = record
        if len(data) > self.max_entries:
            data.popitem(last=False)  # the oldest

    async def get(self, request_id: str) -> PredictionRecord | None:
        record = self._data.get(request_id)
        if record is None or time.time() - record.at > self.ttl_s:
            return None
        return record

    async def close(self) -> None:
        self._data.clear()


class QueuedWrites:
    """Base of the remote stores: ``put`` queues, a background task flushes (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: OrderedDict[str, PredictionRecord] = OrderedDict()
        self._flusher: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    def put(self, record: PredictionRecord) -> None:
        self._pending[record.request_id] = record
        self._pending.move_to_end(record.request_id)
        while len(self._pending) > MAX_PENDING:  # the store is down: drop the oldest
            self._pending.popitem(last=False)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def get(self, request_id: str) -> PredictionRecord | None:
        queued = self._pending.get(request_id)
        if queued is not None:
            return queued
        try:
            return await self._read(request_id)
        except Exception as err:
            self._warn("read", err)
            return None

    async def flush(self) -> None:
        """Write every queued record now."""
        batch = list(self._pending.values())
        if not batch:
            return
        try:
            await self._write(batch)
        except Exception as err:
            self._warn("write", err)
        for record in batch:  # written (or lost): a newer put of the same id stays queued
            if self._pending.get(record.request_id) is record:
                del self._pending[record.request_id]

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_S)
        await self.flush()

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        await self._close()

    def _warn(self, what: str, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning("prediction store: cannot %s (feedback may find no prediction): %s", what, err)

    async def _write(self, records: list[PredictionRecord]) -> None:
        raise NotImplementedError

    async def _read(self, request_id: str) -> PredictionRecord | None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError


class RedisPredictions(QueuedWrites):
    """Records in Redis, one key each, expiring after ``ttl_s``."""

    def __init__(self, url: str, *, prefix: str = "miniml:predictions", ttl_s: float = 86_400) -> None:
        super().__init__()
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)

    async def _write(self, records: list[PredictionRecord]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for r in records:
                pipe.set(f"{self._prefix}:{r.request_id}", r.dumps(), px=self._ttl_ms)
            await pipe.execute()

    async def _read(self, request_id: str) -> PredictionRecord | None:
        raw = await self._redis.get(f"{self._prefix}:{request_id}")
        return None if raw is None else PredictionRecord.loads(raw)

    async def _close(self) -> None:
        await self._redis.aclose()


class PostgresPredictions(QueuedWrites):
    """Records in a PostgreSQL table, expired and trimmed to ``max_entries`` every ``cleanup_s``."""

    TABLE = "miniml_predictions"

    def __init__(
        self, url: str, *, ttl_s: float = 86_400, max_entries: int = 100_000, cleanup_s: float = 60
    ) -> None:
        super().__init__()
        self._url = url
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cleanup_s = cleanup_s
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._last_cleanup = 0.0

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, connect_timeout=5)
            await self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.TABLE} (request_id TEXT PRIMARY KEY, "
                "expires_at DOUBLE PRECISION NOT NULL, record JSONB NOT NULL)"
            )
            await self._conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self.TABLE}_expires ON {self.TABLE} (expires_at)"
            )
        return self._conn

    async def _write(self, records: list[PredictionRecord]) -> None:
        async with self._lock:
            conn = await self._connection()
            async with conn.cursor() as cur:
                await cur.executemany(
                    f"INSERT INTO {self.TABLE} (request_id, expires_at, record) VALUES (%s, %s, %s) "
                    "ON CONFLICT (request_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, "
                    "record = EXCLUDED.record",
                    [(r.request_id, r.at + self._ttl_s, r.dumps()) for r in records],
                )
            if time.monotonic() - self._last_cleanup > self._cleanup_s:
                self._last_cleanup = time.monotonic()
                await self._cleanup(conn)

    async def _cleanup(self, conn: Any) -> None:
        await conn.execute(f"DELETE FROM {self.TABLE} WHERE expires_at < %s", (time.time(),))
        await conn.execute(
            f"DELETE FROM {self.TABLE} WHERE request_id IN (SELECT request_id FROM {self.TABLE} "
            "ORDER BY expires_at DESC OFFSET %s)",
            (self._max_entries,),
        )

    async def _read(self, request_id: str) -> PredictionRecord | None:
        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(
                f"SELECT record::text FROM {self.TABLE} WHERE request_id = %s AND expires_at >= %s",
                (request_id, time.time()),
            )
            row = await cur.fetchone()
        return None if row is None else PredictionRecord.loads(row[0])

    async def cleanup(self) -> None:
        """Delete expired rows and trim to ``max_entries`` now."""
        async with self._lock:
            await self._cleanup(await self._connection())

    async def _close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

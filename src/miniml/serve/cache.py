"""Response cache, per input (so a request with some cached inputs only computes the others).

Entries are keyed by the model's version key plus the task's cache key of the input (the normalised text,
plus any parameter that changes the output). After an alias swap the server asks with the new version key,
so entries of an old version are never served; they age out by TTL / LRU.

Two backends behind one small protocol: :class:`MemoryCache` (``cachetools.TTLCache``: LRU eviction with a
time to live; only touched from the event loop, so no lock) and :class:`RedisCache` (``redis.asyncio``: one
MGET per request, one pipelined SET EX per computed batch). A Redis failure or timeout counts as a miss: the
cache can slow nothing down and fail nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

import cachetools

from miniml.serve.logs import ThrottledWarning
from miniml.serve.settings import CacheSettings

Y = TypeVar("Y")
log = logging.getLogger("miniml.serve")


class Codec(Protocol[Y]):
    """How a task's per-input output becomes bytes for a shared cache, and back."""

    def dumps(self, value: Y) -> bytes: ...

    def loads(self, data: bytes) -> Y: ...


class Cache(Protocol[Y]):
    """Per-input output cache of one served model."""

    async def get_many(self, version_key: str, keys: Sequence[str]) -> list[Y | None]: ...

    async def set_many(self, version_key: str, entries: Sequence[tuple[str, Y]]) -> None: ...

    async def close(self) -> None: ...


class MemoryCache(Generic[Y]):
    """In-process LRU cache whose entries expire after ``ttl_s``."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._data: cachetools.TTLCache[tuple[str, str], Y] = cachetools.TTLCache(max_entries, ttl_s)

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, version_key: str, keys: Sequence[str]) -> list[Y | None]:
        data = self._data
        return [data.get((version_key, key)) for key in keys]

    async def set_many(self, version_key: str, entries: Sequence[tuple[str, Y]]) -> None:
        for key, value in entries:
            self._data[(version_key, key)] = value

    async def close(self) -> None:
        self._data.clear()


class RedisCache(Generic[Y]):
    """Cache in Redis (shared by every replica), values serialised by the task's codec."""

    def __init__(self, settings: CacheSettings, codec: Codec[Y]) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(
            settings.url, socket_timeout=settings.timeout_s, socket_connect_timeout=settings.timeout_s
        )
        self._prefix = settings.prefix
        self._ttl_ms = int(settings.ttl_s * 1000)
        self._codec = codec
        self._warning = ThrottledWarning(log, "redis cache unavailable, serving without it: %s")

    def redis_key(self, version_key: str, key: str) -> str:
        """The Redis key of one entry: prefix, model version, hash of the input (inputs can be long)."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()
        return f"{self._prefix}:{version_key}:{digest}"

    async def get_many(self, version_key: str, keys: Sequence[str]) -> list[Y | None]:
        try:
            raw = await self._redis.mget([self.redis_key(version_key, k) for k in keys])
        except Exception as err:  # any Redis trouble: serve without the cache
            self._warning.warn(err)
            return [None] * len(keys)
        return [None if blob is None else self._codec.loads(blob) for blob in raw]

    async def set_many(self, version_key: str, entries: Sequence[tuple[str, Y]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in entries:
                    pipe.set(self.redis_key(version_key, key), self._codec.dumps(value), px=self._ttl_ms)
                await pipe.execute()
        except Exception as err:
            self._warning.warn(err)

    async def close(self) -> None:
        await self._redis.aclose()


def build_cache(settings: CacheSettings, codec: Codec[Y]) -> Cache[Y] | None:
    """The cache the settings ask for, or None for ``backend: none``."""
    if settings.backend == "memory":
        return MemoryCache(settings.max_entries, settings.ttl_s)
    if settings.backend == "redis":
        return RedisCache(settings, codec)
    return None

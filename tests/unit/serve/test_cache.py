"""Per-input cache: memory LRU with TTL, and Redis (a real redis-server) with the same contract."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from miniml.serve.cache import MemoryCache, RedisCache, build_cache
from miniml.serve.logs import ThrottledWarning
from miniml.serve.settings import CacheSettings
from miniml.tasks.serving import Float32Codec
from serve_support import redis_server

pytestmark = pytest.mark.anyio


async def test_memory_cache_partial_hits_and_version_isolation() -> None:
    cache: MemoryCache[str] = MemoryCache(max_entries=10, ttl_s=60)
    await cache.set_many("m@v1", [("a", "A1"), ("b", "B1")])
    assert await cache.get_many("m@v1", ["a", "x", "b"]) == ["A1", None, "B1"]
    assert await cache.get_many("m@v2", ["a", "b"]) == [None, None]  # a new version never sees old entries


async def test_memory_cache_evicts_least_recently_used() -> None:
    cache: MemoryCache[int] = MemoryCache(max_entries=2, ttl_s=60)
    await cache.set_many("v", [("a", 1), ("b", 2)])
    await cache.get_many("v", ["a"])  # a is now more recent than b
    await cache.set_many("v", [("c", 3)])
    assert await cache.get_many("v", ["a", "b", "c"]) == [1, None, 3]
    assert len(cache) == 2


async def test_memory_cache_entries_expire() -> None:
    cache: MemoryCache[int] = MemoryCache(max_entries=10, ttl_s=0.05)
    await cache.set_many("v", [("a", 1)])
    assert await cache.get_many("v", ["a"]) == [1]
    await asyncio.sleep(0.1)
    assert await cache.get_many("v", ["a"]) == [None]


def test_build_cache_follows_settings() -> None:
    assert isinstance(build_cache(CacheSettings(), Float32Codec()), MemoryCache)
    assert build_cache(CacheSettings(backend="none"), Float32Codec()) is None


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def test_redis_cache_round_trips_float32_rows(redis_url: str) -> None:
    cache = RedisCache(CacheSettings(backend="redis", url=redis_url, prefix="t1"), Float32Codec())
    row = np.array([0.7, 0.2, 0.1], dtype=np.float32)
    await cache.set_many("m@v1", [("hello", row)])
    got = await cache.get_many("m@v1", ["hello", "other"])
    assert got[1] is None
    assert got[0] is not None and np.array_equal(got[0], row) and got[0].dtype == np.float32
    assert await cache.get_many("m@v2", ["hello"]) == [None]
    await cache.close()


async def test_redis_cache_entries_expire(redis_url: str) -> None:
    cache = RedisCache(CacheSettings(backend="redis", url=redis_url, ttl_s=0.1, prefix="t2"), Float32Codec())
    await cache.set_many("v", [("a", np.ones(2, dtype=np.float32))])
    assert (await cache.get_many("v", ["a"]))[0] is not None
    await asyncio.sleep(0.25)
    assert await cache.get_many("v", ["a"]) == [None]
    await cache.close()


async def test_unreachable_redis_is_a_miss_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from serve_support import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    cache = RedisCache(CacheSettings(backend="redis", url=url, timeout_s=0.2), Float32Codec())
    with caplog.at_level(logging.WARNING, logger="miniml.serve"):
        await cache.set_many("v", [("a", np.ones(2, dtype=np.float32))])  # swallowed, logged
        assert await cache.get_many("v", ["a", "b"]) == [None, None]
    await cache.close()
    # two failures, one line: the warning is throttled (one per 10 s), not one per request
    lines = [r.getMessage() for r in caplog.records if "redis cache unavailable" in r.getMessage()]
    assert len(lines) == 1


def test_throttled_warning_logs_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("miniml.test.throttled")
    every = ThrottledWarning(logger, "down: %s", every_s=0)
    once = ThrottledWarning(logger, "store down: %s", every_s=3600)
    with caplog.at_level(logging.WARNING, logger="miniml.test.throttled"):
        assert once.warn(OSError("refused")) and not once.warn(OSError("refused again"))
        assert every.warn(OSError("a")) and every.warn(OSError("b"))
    assert [r.getMessage() for r in caplog.records] == ["store down: refused", "down: a", "down: b"]

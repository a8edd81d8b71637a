"""The Redis and PostgreSQL prediction stores against real servers (started by the tests)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from miniml.monitor.predictions import Answer, PostgresPredictions, PredictionRecord, RedisPredictions
from serve_support import redis_server
from store_support import postgres_server

pytestmark = pytest.mark.services


def record(rid: str, at: float | None = None) -> PredictionRecord:
    r = PredictionRecord(rid, "langid", "alice", ["hej"], {"champion": Answer(1, ["da"])})
    if at is not None:
        r.at = at
    return r


def test_redis_store_shares_records_and_expires_them(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        writer = RedisPredictions(url, ttl_s=0.5)
        writer.put(record("r1"))
        assert (await writer.get("r1")) is not None  # still queued: found without a round trip
        await writer.flush()
        reader = RedisPredictions(url, ttl_s=0.5)  # another replica
        got = await reader.get("r1")
        assert got is not None and got.answers["champion"].outputs == ["da"] and got.key == "alice"
        got.labelled.append(0)
        reader.put(got)
        await reader.flush()
        assert (await writer.get("r1")).labelled == [0]  # type: ignore[union-attr]
        await asyncio.sleep(0.7)
        assert await reader.get("r1") is None  # expired
        await writer.close()
        await reader.close()

    with redis_server(tmp_path) as url:
        asyncio.run(scenario(url))


def test_redis_store_down_loses_records_not_requests() -> None:
    async def scenario() -> None:
        store = RedisPredictions("redis://127.0.0.1:1/0")
        store.put(record("r1"))
        await store.flush()  # logged, not raised
        assert await store.get("r1") is None
        await store.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def postgres_uri() -> object:
    with postgres_server("predictions") as uri:
        yield uri


def test_postgres_store_round_trip_expiry_and_trim(postgres_uri: str) -> None:
    async def scenario() -> None:
        store = PostgresPredictions(postgres_uri, ttl_s=60, max_entries=3)
        now = time.time()
        for i in range(5):
            store.put(record(f"r{i}", at=now + i))
        await store.flush()
        other = PostgresPredictions(postgres_uri, ttl_s=60, max_entries=3)
        got = await other.get("r4")
        assert got is not None and got.inputs == ["hej"]
        await store.cleanup()  # keeps the 3 newest
        assert [await other.get(f"r{i}") is not None for i in range(5)] == [False, False, True, True, True]
        store.put(record("old", at=now - 120))  # expired on arrival
        await store.flush()
        assert await other.get("old") is None
        await store.close()
        await other.close()

    asyncio.run(scenario())

from __future__ import annotations

import asyncio

from miniml.monitor.predictions import Answer, MemoryPredictions, PredictionRecord


def record(rid: str) -> PredictionRecord:
    return PredictionRecord(rid, "toy", "alice", ["hej"], {"champion": Answer(2, ["da"])})


def test_record_json_round_trip() -> None:
    r = record("r1")
    r.labelled.append(0)
    assert PredictionRecord.loads(r.dumps()) == r


def test_memory_store_is_bounded_and_expires() -> None:
    async def scenario() -> None:
        store = MemoryPredictions(max_entries=2, ttl_s=60)
        for rid in ("a", "b", "c"):
            store.put(record(rid))
        assert len(store) == 2
        assert await store.get("a") is None  # evicted: the oldest
        got = await store.get("c")
        assert got is not None and got.answers["champion"].outputs == ["da"]
        short = MemoryPredictions(ttl_s=0.05)
        short.put(record("x"))
        await asyncio.sleep(0.1)
        assert await short.get("x") is None
        await store.close()

    asyncio.run(scenario())

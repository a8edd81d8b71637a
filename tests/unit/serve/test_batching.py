"""The batcher merges concurrent requests, bounds its queue, times out, drains and isolates failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from miniml.serve.batching import Batcher, BatcherClosedError, BatchTimeoutError, QueueFullError

pytestmark = pytest.mark.anyio


class Doubler:
    """A real batch function: doubles numbers and records every batch it saw and on which thread."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, items: list[int]) -> tuple[str, Sequence[int]]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot double {self.fail_on}")
        return "v1", [2 * x for x in items]


def make(fn: Doubler, **kw: float) -> Batcher[int, str, int]:
    opts = {"max_batch_size": 64, "max_wait_ms": 50.0, "queue_size": 1000, "timeout_s": 5.0} | kw
    return Batcher(fn, name="t", **opts)  # type: ignore[arg-type]


async def test_concurrent_requests_share_one_batch_and_get_their_own_outputs() -> None:
    fn = Doubler()
    batcher = make(fn)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
    await batcher.close()
    assert [r[1] for r in results] == [[2 * i, 2 * (i + 100)] for i in range(10)]
    assert all(r[0] == "v1" for r in results)
    assert len(fn.batches) < 10  # merged: fewer forward passes than requests
    assert sum(len(b) for b in fn.batches) == 20
    assert fn.threads == {"batcher-t"}


async def test_batches_never_exceed_max_batch_size() -> None:
    fn = Doubler()
    batcher = make(fn, max_batch_size=8)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit([i]) for i in range(40)))
    await batcher.close()
    assert [r[1] for r in results] == [[2 * i] for i in range(40)]
    assert max(len(b) for b in fn.batches) <= 8
    assert len(fn.batches) >= 5


async def test_a_request_larger_than_the_batch_goes_alone() -> None:
    fn = Doubler()
    batcher = make(fn, max_batch_size=4, max_wait_ms=0)
    batcher.start()
    _meta, out = await batcher.submit(list(range(10)))
    await batcher.close()
    assert out == [2 * x for x in range(10)] and fn.batches == [list(range(10))]


async def test_full_queue_refuses_with_retry_after() -> None:
    batcher = make(Doubler(), queue_size=4, max_wait_ms=2000)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit([1, 2, 3]))
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError) as err:
        await batcher.submit([4, 5])
    assert err.value.retry_after >= 1
    assert batcher.pending == 3
    await batcher.close()  # closing skips the fill wait and answers the queued job
    assert (await first)[1] == [2, 4, 6]


async def test_timeout_abandons_the_job() -> None:
    fn = Doubler()
    batcher = make(fn, max_wait_ms=400, timeout_s=0.05)
    batcher.start()
    with pytest.raises(BatchTimeoutError):
        await batcher.submit([7])
    await asyncio.sleep(0.5)
    await batcher.close()
    assert fn.batches == []  # the worker skipped the expired job


async def test_close_drains_queued_jobs_then_refuses() -> None:
    fn = Doubler()
    batcher = make(fn, max_wait_ms=5000)
    batcher.start()
    pending = [asyncio.ensure_future(batcher.submit([i])) for i in range(5)]
    await asyncio.sleep(0.01)
    await batcher.close()
    assert [(await p)[1] for p in pending] == [[2 * i] for i in range(5)]
    with pytest.raises(BatcherClosedError):
        await batcher.submit([1])


async def test_a_failing_request_does_not_fail_its_batch_mates() -> None:
    fn = Doubler(fail_on=13)
    batcher = make(fn)
    batcher.start()
    good, bad = await asyncio.gather(batcher.submit([1]), batcher.submit([13]), return_exceptions=True)
    await batcher.close()
    assert good == ("v1", [2])
    assert isinstance(bad, ValueError)


async def test_on_start_and_on_batch_hooks_run_on_the_worker() -> None:
    seen: list[tuple[str, object]] = []
    batcher: Batcher[int, str, int] = Batcher(
        Doubler(),
        name="hooks",
        max_batch_size=8,
        max_wait_ms=0,
        queue_size=8,
        timeout_s=1,
        on_start=lambda: seen.append(("start", threading.current_thread().name)),
        on_batch=lambda size, secs: seen.append(("batch", size)),
    )
    batcher.start()
    await batcher.submit([1, 2])
    await batcher.close()
    assert seen == [("start", "batcher-hooks"), ("batch", 2)]


async def test_several_workers_share_the_queue_and_know_their_index() -> None:
    from miniml.serve.batching import current_worker

    seen: set[int] = set()
    release = threading.Event()

    def slow(items: list[int]) -> tuple[str, Sequence[int]]:
        seen.add(current_worker())
        release.wait(2)  # hold the first batch: the second must go to the other worker
        return "v1", [2 * x for x in items]

    batcher: Batcher[int, str, int] = Batcher(
        slow, name="w", max_batch_size=1, max_wait_ms=0, queue_size=100, timeout_s=5, workers=2
    )
    batcher.start()
    first = asyncio.create_task(batcher.submit([1]))
    second = asyncio.create_task(batcher.submit([2]))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(seen) == 2:
            break
    release.set()
    assert await first == ("v1", [2]) and await second == ("v1", [4])
    await batcher.close()
    assert seen == {0, 1}
    assert current_worker() == 0  # outside a worker


async def test_requests_that_timed_out_are_dropped_before_their_batch_runs() -> None:
    import time

    class Slow(Doubler):
        def __call__(self, items: list[int]) -> tuple[str, Sequence[int]]:
            time.sleep(0.04)  # a forward pass slower than the request timeout
            return super().__call__(items)

    fn = Slow()
    dropped: list[int] = []
    batcher = Batcher(
        fn,
        name="t",
        max_batch_size=1,
        max_wait_ms=0,
        queue_size=100,
        timeout_s=0.03,
        on_expired=dropped.append,
    )
    batcher.start()
    calls = [asyncio.ensure_future(batcher.submit([i])) for i in range(20)]
    await asyncio.sleep(0)  # every job is queued
    time.sleep(0.3)  # a busy event loop: its 504 timers cannot run, only the worker's clock helps
    results = await asyncio.gather(*calls, return_exceptions=True)
    await batcher.close()
    computed = sum(len(b) for b in fn.batches)
    assert computed <= 2, f"{computed} of 20 inputs computed for requests already answered 504"
    assert sum(isinstance(r, BatchTimeoutError) for r in results) >= 18
    assert sum(dropped) >= 18 - computed

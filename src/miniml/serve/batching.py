"""Dynamic batching in the server loop: requests from many clients, one forward pass.

Each served model has one :class:`Batcher`. A request (on the event loop) appends a job — its inputs and a
future — to a bounded queue; one worker thread per model takes jobs in arrival order, merges them up to
``max_batch_size`` inputs (waiting at most ``max_wait_ms`` after the oldest job arrived for the batch to
fill), runs the batch function off the event loop and hands every result back with one
``call_soon_threadsafe`` per batch. Under load the queue fills while the previous batch runs, so batches form
without any waiting.

With ``workers`` > 1, that many worker threads take batches from the one queue (each runs its own model
replica, see ``current_worker``): a small model on CPU runs faster as single-thread replicas side by side
than as one model on all cores (MiniLM int8 ONNX on 2 cores, one text at a time: 337 texts/s as two
one-thread replicas, 278 as one two-thread model; ``bench/offline_replicas.py``).

Hand-written (about 200 lines) because the batching loops of LitServe and Ray Serve are internal to their
servers. A ``threading.Condition`` in the worker instead of ``asyncio`` timers keeps the event loop's share
of the work to an append and a notify per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

X = TypeVar("X")
Y = TypeVar("Y")
M = TypeVar("M")

log = logging.getLogger("miniml.serve")


_worker = threading.local()


def current_worker() -> int:
    """Index of the batcher worker thread running the caller (0 outside a worker)."""
    return int(getattr(_worker, "index", 0))


class QueueFullError(Exception):
    """The queue holds ``queue_size`` inputs already; ``retry_after`` estimates when it drains (seconds)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"queue full; retry after {retry_after}s")
        self.retry_after = retry_after


class BatcherClosedError(Exception):
    """The batcher is shutting down and takes no new work."""


class BatchTimeoutError(Exception):
    """The result did not come back within the timeout."""


@dataclass(slots=True, eq=False)
class _Job(Generic[X]):
    items: list[X]
    future: asyncio.Future[Any]
    enqueued: float
    deadline: float  # monotonic time its request times out (504): never computed after it
    abandoned: bool = False


class Batcher(Generic[X, M, Y]):
    """Merge concurrent ``submit`` calls into batches for ``fn``, run on one worker thread.

    ``fn(items) -> (meta, outputs)`` gets a list of inputs and returns one output per input plus one value
    for the whole batch (the model version that computed it); each caller gets ``(meta, its outputs)``.
    ``on_start`` runs first on the worker thread (torch thread settings are per thread);
    ``on_batch(size, seconds)`` after each batch; ``on_expired(inputs)`` when the worker drops jobs whose
    request already timed out (checked against each job's deadline on the worker's own clock, because the
    event loop that answers the 504 may itself be late under load).
    """

    def __init__(
        self,
        fn: Callable[[list[X]], tuple[M, Sequence[Y]]],
        *,
        name: str,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        timeout_s: float,
        on_start: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_expired: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.fn = fn
        self.workers = max(1, workers)
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._on_start = on_start
        self._on_batch = on_batch
        self._on_expired = on_expired
        self._jobs: deque[_Job[X]] = deque()
        self._pending = 0  # inputs queued, not yet taken by the worker
        self._cond = threading.Condition()
        self._closed = False
        self._rate = 0.0  # inputs per second, moving average: sizes Retry-After
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []

    @property
    def pending(self) -> int:
        """Inputs waiting for the worker."""
        return self._pending

    def start(self) -> None:
        """Start the worker thread; call from the event loop that will ``submit``."""
        self._loop = asyncio.get_running_loop()
        for i in range(self.workers):
            suffix = f"-{i}" if self.workers > 1 else ""
            thread = threading.Thread(
                target=self._work, args=(i,), name=f"batcher-{self.name}{suffix}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    async def submit(self, items: list[X]) -> tuple[M, list[Y]]:
        """Queue ``items`` and wait for their outputs (same order)."""
        loop = self._loop
        if self._closed or loop is None:
            raise BatcherClosedError(f"batcher {self.name} is not running")
        now = time.monotonic()
        job: _Job[X] = _Job(items, loop.create_future(), now, now + self.timeout_s)
        with self._cond:
            if self._pending + len(items) > self.queue_size:
                raise QueueFullError(self._retry_after())
            was_idle = not self._jobs
            self._jobs.append(job)
            self._pending += len(items)
            # Wake the worker only when it may act: a first job, or a batch that just became full.
            if was_idle or self._pending >= self.max_batch_size:
                self._cond.notify()
        timer = loop.call_later(self.timeout_s, self._expire, job)
        try:
            result: tuple[M, list[Y]] = await job.future
            return result
        finally:
            timer.cancel()
            job.abandoned = True  # no-op when done; on cancellation the worker skips it

    async def close(self) -> None:
        """Take no new work, finish every queued job, stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _retry_after(self) -> int:
        rate = self._rate or 1.0
        return max(1, math.ceil(self._pending / rate))

    def _expire(self, job: _Job[X]) -> None:
        job.abandoned = True
        if not job.future.done():
            job.future.set_exception(BatchTimeoutError(f"no result within {self.timeout_s:g}s"))

    # ------------------------------------------------------------------ worker thread
    def _work(self, index: int = 0) -> None:
        _worker.index = index
        if self._on_start is not None:
            self._on_start()
        while (jobs := self._collect()) is not None:
            live = self._drop_expired(jobs)
            if live:
                self._run(live)

    def _drop_expired(self, jobs: list[_Job[X]]) -> list[_Job[X]]:
        """The jobs whose request is still waiting; the others get their 504 now, unrun."""
        now = time.monotonic()
        expired = [job for job in jobs if job.deadline <= now]
        if not expired:
            return jobs
        error = BatchTimeoutError(f"no result within {self.timeout_s:g}s")
        self._hand_back(expired, None, None, error)
        if self._on_expired is not None:
            self._on_expired(sum(len(job.items) for job in expired))
        return [job for job in jobs if job.deadline > now]

    def _collect(self) -> list[_Job[X]] | None:
        """Block until jobs are queued, let the batch fill, and take up to ``max_batch_size`` inputs."""
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._jobs[0].enqueued + self.max_wait_s
            while self._pending < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take()

    def _take(self) -> list[_Job[X]]:
        """Pop jobs in order until the next would overflow the batch (a single big job goes alone)."""
        jobs: list[_Job[X]] = []
        size = 0
        while self._jobs:
            job = self._jobs[0]
            if jobs and size + len(job.items) > self.max_batch_size:
                break
            self._jobs.popleft()
            self._pending -= len(job.items)
            if not job.abandoned:
                jobs.append(job)
                size += len(job.items)
        if self._jobs and self.workers > 1:  # work left: another worker may take it now
            self._cond.notify()
        return jobs

    def _run(self, jobs: list[_Job[X]]) -> None:
        items = jobs[0].items if len(jobs) == 1 else [x for job in jobs for x in job.items]
        start = time.perf_counter()
        try:
            meta, outputs = self.fn(items)
            if len(outputs) != len(items):
                raise RuntimeError(f"batch function returned {len(outputs)} outputs for {len(items)} inputs")
        except Exception as err:
            if len(jobs) > 1:  # isolate the request that broke the batch; the others still get answers
                for job in jobs:
                    self._run([job])
                return
            log.exception("batch of model %s failed", self.name)
            self._hand_back(jobs, None, None, err)
            return
        seconds = time.perf_counter() - start
        rate = len(items) / max(seconds, 1e-6)
        self._rate = rate if not self._rate else 0.8 * self._rate + 0.2 * rate
        self._hand_back(jobs, meta, outputs, None)
        if self._on_batch is not None:
            self._on_batch(len(items), seconds)

    def _hand_back(
        self, jobs: list[_Job[X]], meta: M | None, outputs: Sequence[Y] | None, err: Exception | None
    ) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_deliver, jobs, meta, outputs, err)


def _deliver(jobs: list[_Job[Any]], meta: Any, outputs: Sequence[Any] | None, err: Exception | None) -> None:
    """On the event loop: resolve each job's future with its slice of the batch."""
    start = 0
    for job in jobs:
        end = start + len(job.items)
        if not job.future.done():
            if err is not None or outputs is None:
                job.future.set_exception(err or RuntimeError("batch produced no outputs"))
            else:
                job.future.set_result((meta, list(outputs[start:end])))
        start = end

"""The server's continuous-batching loop for generative models: one thread driving a step scheduler.

It has the batcher's interface (``submit``, ``start``, ``close``, ``pending``), so the request path is the
same for both loops. A request (on the event loop) queues its rows and waits; the worker thread, between
two decoding steps, admits queued rows into free slots (up to ``max_batch_size`` running rows: prefill,
first token, then they join the batch), runs one step for the whole batch, and resolves a request's future
as soon as its last row has ended — rows of other requests keep going. Streaming pieces reach the event
loop through each row's sink as they are chosen. A model version swap waits until the running rows are
done, then the next admitted rows run on the new version.

The queue is bounded (``queue_size`` rows: 503 + Retry-After beyond), and every request has its timeout
(504; its rows are cancelled at the next step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from miniml.runtime.decoding.rows import RowRequest
from miniml.runtime.decoding.scheduler import ContinuousScheduler
from miniml.serve.batching import BatcherClosedError, BatchTimeoutError, QueueFullError

log = logging.getLogger("miniml.serve")


@dataclass(eq=False)
class _Job:
    items: list[Any]
    future: asyncio.Future[Any]
    outputs: list[Any] = field(default_factory=list)
    left: int = 0
    model: Any = None
    abandoned: bool = False


class ContinuousBatcher:
    """Feeds a :class:`ContinuousScheduler` from a bounded queue (see the module docstring)."""

    def __init__(
        self,
        current: Callable[[], Any],
        *,
        name: str,
        max_batch_size: int,
        queue_size: int,
        timeout_s: float,
        on_start: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.current = current  # the LoadedModel to admit new rows on (swaps between requests)
        self.name = name
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._on_start, self._on_batch = on_start, on_batch
        self._queue: deque[tuple[_Job, int]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._rate = 0.0  # rows finished per second: sizes Retry-After
        self._last_done = time.monotonic()
        self._model: Any = None
        self._scheduler: ContinuousScheduler | None = None

    @property
    def pending(self) -> int:
        """Rows waiting for a slot."""
        return len(self._queue)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name=f"continuous-{self.name}", daemon=True)
        self._thread.start()

    async def submit(self, items: list[Any]) -> tuple[Any, list[Any]]:
        """Queue ``items`` (GenItems) and wait for their results, in order."""
        loop = self._loop
        if self._closed or loop is None:
            raise BatcherClosedError(f"batcher {self.name} is not running")
        job = _Job(items, loop.create_future(), [None] * len(items), len(items))
        with self._cond:
            if len(self._queue) + len(items) > self.queue_size:
                raise QueueFullError(max(1, math.ceil(len(self._queue) / (self._rate or 1.0))))
            self._queue.extend((job, i) for i in range(len(items)))
            self._cond.notify()
        timer = loop.call_later(self.timeout_s, self._expire, job)
        try:
            result: tuple[Any, list[Any]] = await job.future
            return result
        finally:
            timer.cancel()
            self._abandon(job)

    async def close(self) -> None:
        """Take no new work; finish queued and running rows; stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _expire(self, job: _Job) -> None:
        self._abandon(job)
        if not job.future.done():
            job.future.set_exception(BatchTimeoutError(f"no result within {self.timeout_s:g}s"))

    def _abandon(self, job: _Job) -> None:
        """Nobody waits for ``job`` any more: running rows stop at the next step, queued ones are skipped."""
        job.abandoned = True
        for item in job.items:
            item.cancel.set()

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while True:
            taken = self._take()
            if taken is None:
                return
            scheduler = self._scheduler
            if taken:
                assert scheduler is not None
                scheduler.admit([self._request(job, i) for job, i in taken])
            if scheduler is not None and scheduler.active:
                start = time.perf_counter()
                size = scheduler.active
                scheduler.step()
                if self._on_batch is not None:
                    self._on_batch(size, time.perf_counter() - start)

    def _take(self) -> list[tuple[_Job, int]] | None:
        """Rows to admit now (maybe none); blocks while there is nothing to do; None: closed and done."""
        with self._cond:
            while not self._queue and not self._running():
                if self._closed:
                    return None
                self._cond.wait()
            if not self._ready_for_new_rows():
                return []
            free = self._scheduler.free if self._scheduler is not None else 0
            taken: list[tuple[_Job, int]] = []
            while self._queue and len(taken) < free:
                job, i = self._queue.popleft()
                if not job.abandoned:
                    taken.append((job, i))
            return taken

    def _running(self) -> bool:
        return self._scheduler is not None and self._scheduler.active > 0

    def _ready_for_new_rows(self) -> bool:
        """Bind the scheduler to the current model version (only between two runs of rows)."""
        model = self.current()
        if model is self._model and self._scheduler is not None:
            return True
        if self._running():
            return False  # a new version: let the running rows finish on the old one first
        self._model = model
        self._scheduler = ContinuousScheduler(model.predictor, self.max_batch_size)
        return True

    def _request(self, job: _Job, index: int) -> RowRequest:
        item = job.items[index]
        item.generated = True
        job.model = job.model or self._model

        def on_piece(piece: str) -> None:
            item.first_piece = item.first_piece or time.monotonic()
            if item.sink is not None:
                item.sink(piece)

        def on_done(outcome: Any) -> None:
            self._finish(job, index, outcome)

        return RowRequest(
            item.ids, item.params, item.constraint, item.cancel, on_piece, on_done, item.created
        )

    def _finish(self, job: _Job, index: int, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            log.error("generation of model %s failed: %s", self.name, outcome)
            for item in job.items:  # the request fails as a whole: stop its other rows
                item.cancel.set()
            self._hand_back(job, None, outcome)
            return
        job.outputs[index] = outcome
        job.left -= 1
        now = time.monotonic()
        rate = 1 / max(now - self._last_done, 1e-3)  # rows finished per second, smoothed
        self._rate, self._last_done = (0.9 * self._rate + 0.1 * rate) if self._rate else rate, now
        if job.left == 0:
            self._hand_back(job, (job.model, job.outputs), None)

    def _hand_back(self, job: _Job, result: Any, err: BaseException | None) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_deliver, job, result, err)


def _deliver(job: _Job, result: Any, err: BaseException | None) -> None:
    if job.future.done():
        return
    if err is not None:
        job.future.set_exception(err)
    else:
        job.future.set_result(result)

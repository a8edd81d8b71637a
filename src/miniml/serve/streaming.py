"""Generation results over HTTP: waiting for a batch, streaming its pieces, and clients that leave.

A generation job is the items of one request queued through the model's batcher (cache + batcher). When it
ends its tokens and times to first token are recorded (also for a client that left), and a failed job
(timeout) stops its rows; ``on_done`` (the token reservation's settlement) runs then too. Streaming
(server-sent events) rides on the same batch: the worker hands each step's text pieces to the waiting request
through the event loop (:class:`PieceStream`). A client that disconnects sets its rows' cancel flags, which
finishes those rows at the next step while the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request

from miniml.runtime.generation import GenerationResult
from miniml.serve.errors import HTTPProblem
from miniml.tasks.generative_serving import GenItem, result_dict

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel
    from miniml.serve.engine import ServedModel
    from miniml.serve.metrics import ServeMetrics

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DISCONNECT_POLL_S = 0.2


def start_job(
    metrics: ServeMetrics,
    name: str,
    served: ServedModel,
    items: list[GenItem],
    on_done: Callable[[asyncio.Future[Any]], None] | None = None,
) -> asyncio.Future[Any]:
    """Queue ``items`` (cache + batcher); when the job ends its tokens and first-token times are recorded,
    also for a client that left (its rows were cancelled), a failed job (timeout) stops its rows, and
    ``on_done`` runs (e.g. the unused part of a token reservation goes back)."""
    task = asyncio.ensure_future(served.infer(items))
    task.add_done_callback(functools.partial(_job_done, metrics, name, items))
    if on_done is not None:
        task.add_done_callback(on_done)
    return task


def _job_done(metrics: ServeMetrics, name: str, items: list[GenItem], task: asyncio.Future[Any]) -> None:
    if task.cancelled() or task.exception() is not None:
        for item in items:  # e.g. the request timed out: the worker stops these rows at its next step
            item.cancel.set()
        return
    _, outputs = task.result()
    done = [(item, out) for item, out in zip(items, outputs, strict=True) if item.generated]  # not cache hits
    metrics.observe_generation(
        name,
        sum(out.completion_tokens for _, out in done),
        [item.first_piece - item.created for item, _ in done if item.first_piece is not None],
    )


async def infer_until_disconnect(
    metrics: ServeMetrics,
    name: str,
    served: ServedModel,
    items: list[GenItem],
    request: Request,
    on_done: Callable[[asyncio.Future[Any]], None] | None = None,
) -> tuple[LoadedModel, list[GenerationResult]]:
    """The results of ``items``; a client that disconnects meanwhile cancels its rows (499)."""
    task = start_job(metrics, name, served, items, on_done)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            result: tuple[LoadedModel, list[GenerationResult]] = task.result()
            return result
        if await request.is_disconnected():
            for item in items:
                item.cancel.set()
            raise HTTPProblem(499, "client_closed_request", "the client disconnected; generation stopped")


class PieceStream:
    """The text pieces of ``items`` while their batch generates, in order; cancels them when dropped."""

    def __init__(
        self,
        metrics: ServeMetrics,
        name: str,
        served: ServedModel,
        items: list[GenItem],
        on_done: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> None:
        self.items = items
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for row, item in enumerate(items):
            item.sink = _threadsafe_put(loop, self.queue, row)
        self.task = start_job(metrics, name, served, items, on_done)
        self.getter: asyncio.Future[tuple[int, str]] = asyncio.ensure_future(self.queue.get())

    async def started(self) -> PieceStream:
        """Wait for the first piece or the end; errors before any piece (queue full, timeout) raise here."""
        await asyncio.wait(self._waits(), return_when=asyncio.FIRST_COMPLETED)
        if self.task.done() and not self.getter.done() and self.task.exception() is not None:
            self.close()
            raise self.task.exception()  # type: ignore[misc]
        return self

    async def pieces(self) -> AsyncIterator[tuple[int, str]]:
        """``(row, piece)`` until generation ends; then ``outcome()`` holds the results."""
        try:
            while True:
                await asyncio.wait(self._waits(), return_when=asyncio.FIRST_COMPLETED)
                if self.getter.done():
                    yield self.getter.result()
                    self.getter = asyncio.ensure_future(self.queue.get())
                    continue
                while not self.queue.empty():  # pieces queued before the batch's result
                    yield self.queue.get_nowait()
                return
        finally:  # also when the client disconnected (the response task is cancelled)
            self.close()

    def _waits(self) -> set[asyncio.Future[Any]]:
        return {self.task, self.getter}

    def outcome(self) -> tuple[LoadedModel, list[GenerationResult]]:
        result: tuple[LoadedModel, list[GenerationResult]] = self.task.result()
        return result

    def close(self) -> None:
        """Stop the rows (a no-op once they finished); the job ends at the worker's next step."""
        for item in self.items:
            item.cancel.set()
        self.getter.cancel()


def _threadsafe_put(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[int, str]], row: int
) -> Callable[[str], None]:
    def put(piece: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (row, piece))

    return put


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event carrying JSON (or a literal string such as ``[DONE]``)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


def error_event(err: BaseException) -> bytes:
    if isinstance(err, HTTPProblem):
        return sse({"error": {"code": err.code, "message": err.message, "status": err.status}}, "error")
    return sse(
        {"error": {"code": "internal_error", "message": "generation failed; it has been logged"}}, "error"
    )


# ---------------------------------------------------------------- POST /v1/models/{name}/generate


async def native_events(stream: PieceStream) -> AsyncIterator[bytes]:
    """SSE: ``{"index", "text"}`` per piece, ``{"index", "done", "finish_reason"}`` per row, ``[DONE]``."""
    async for row, piece in stream.pieces():
        yield sse({"index": row, "text": piece})
    try:
        model, outputs = stream.outcome()
    except Exception as err:
        yield error_event(err)
        return
    for row, result in enumerate(outputs):
        yield sse({"index": row, "done": True, "version": model.version, **result_dict(result)})
    yield sse(b"[DONE]")

"""Generation over HTTP: the handler of seq2seq / causal_lm models and ``POST /v1/models/{name}/generate``.

Requests of many clients share the server's batcher like classification does: each prompt is one queued
item, and the worker generates for a whole batch in one ``Generator.run`` per sampling setting, every row
with its own token cap, stop strings and cancel flag. Streaming (server-sent events) rides on the same
batch: the worker hands each step's text pieces to the waiting requests through the event loop. A client
that disconnects sets its rows' cancel flags, which finishes those rows at the next step while the rest of
the batch goes on. Prompts are tokenized on the event loop before queueing, so a prompt over the cap is a
413 before any model time is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import StreamingResponse

from miniml.generation import GenerationParams, GenerationResult, Generator
from miniml.serve.cache import Codec
from miniml.serve.errors import HTTPProblem
from miniml.serve.routes import read_body
from miniml.serve.schemas import ERROR_RESPONSES
from miniml.serve.state import ServerState, get_state
from miniml.serve.tasks import Decoded, check_sizes, invalid_request, normalize_text

if TYPE_CHECKING:
    from miniml.serve.engine import ServedModel
    from miniml.serve.runtime import LoadedModel
    from miniml.serve.settings import GenerationLimits, RequestLimits

router = APIRouter()
JSON = "application/json"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DISCONNECT_POLL_S = 0.2


class GenerateRequest(BaseModel):
    """Prompts to continue, and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"inputs": ["table: t\nQ: how many rows?\nA:"], "max_new_tokens": 32}]
        },
    )

    inputs: list[str] = Field(min_length=1, description="prompts (limits.max_inputs at most)")
    max_new_tokens: int | None = Field(None, ge=1, description="default: the model's; capped by the server")
    temperature: float | None = Field(None, ge=0.0, le=5.0, description="0: greedy (default: the model's)")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    num_beams: int | None = Field(None, ge=1, le=16, description="beam search (not with stream)")
    stop: list[str] | str | None = Field(None, description="cut each answer before any of these")
    stream: bool = Field(False, description="send text pieces as server-sent events while generating")


@dataclass(eq=False, slots=True)
class GenItem:
    """One prompt on its way through the batcher (mutable: the worker notes its first piece)."""

    prompt: str
    ids: list[int]
    params: GenerationParams
    stream: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    sink: Callable[[str], None] | None = None  # called on the worker thread with each new text piece
    created: float = field(default_factory=time.monotonic)
    first_piece: float | None = None
    generated: bool = False  # set by the worker: the result was computed, not read from the cache


class ResultCodec:
    """A generation result as JSON bytes for a shared cache."""

    def dumps(self, value: GenerationResult) -> bytes:
        return orjson.dumps(result_dict(value))

    def loads(self, data: bytes) -> GenerationResult:
        d = orjson.loads(data)
        return GenerationResult(d["text"], d["prompt_tokens"], d["completion_tokens"], d["finish_reason"])


def result_dict(result: GenerationResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }


class GenerationHandler:
    """The server hooks of generative models (see ``miniml.serve.tasks``)."""

    route: ClassVar[str] = "generate"
    codec: Codec[GenerationResult] = ResultCodec()

    def decode_request(self, body: bytes, limits: RequestLimits) -> Decoded[str]:
        """Validated prompts (normalised) and the request; tokenizing needs the model (``encode_items``)."""
        try:
            request = GenerateRequest.model_validate_json(body)
        except ValidationError as err:
            raise invalid_request(err) from None
        chars = check_sizes(request.inputs, limits)
        return Decoded([normalize_text(t) for t in request.inputs], request, chars)

    def cache_key(self, item: GenItem) -> str | None:
        """Greedy, non-streamed generations are deterministic: cache them by prompt and settings."""
        if item.stream or item.params.temperature > 0:
            return None
        return f"{item.params.model_dump_json()}\x1f{item.prompt}"

    def cacheable(self, output: GenerationResult) -> bool:
        return output.finish_reason != "cancelled"

    def predict(self, model: LoadedModel, items: list[GenItem]) -> Sequence[GenerationResult]:
        """Generate for a batch: one ``Generator.run`` per sampling setting, rows in their order."""
        generator: Generator = model.predictor
        results: list[GenerationResult | None] = [None] * len(items)
        groups: dict[tuple[float, float, int], list[int]] = {}
        for i, item in enumerate(items):
            item.generated = True
            groups.setdefault(item.params.sampling_key(), []).append(i)
        for rows in groups.values():
            batch = [items[i] for i in rows]
            on_step = None if batch[0].params.num_beams > 1 else _dispatcher(batch)
            outputs = generator.run(
                [x.ids for x in batch], [x.params for x in batch], [x.cancel for x in batch], on_step
            )
            for i, output in zip(rows, outputs, strict=True):
                results[i] = output
        return [r for r in results if r is not None]

    def encode_response(self, model: LoadedModel, outputs: list[GenerationResult], params: Any) -> bytes:
        body = {
            "model": model.name,
            "version": model.version,
            "generations": [result_dict(r) for r in outputs],
        }
        return orjson.dumps(body)

    def top_labels(self, model: LoadedModel, outputs: list[GenerationResult]) -> list[str]:
        return []  # no labels: generation is counted in tokens (miniml_generated_tokens)

    def warm_up(self, model: LoadedModel) -> None:
        generator: Generator = model.predictor
        generator.generate(["warm up"], GenerationParams.model_validate({"max_new_tokens": 2}), truncate=True)


def _dispatcher(batch: list[GenItem]) -> Callable[[list[str]], None]:
    """The per-step callback: note each row's first piece and pass pieces to streaming requests."""

    def on_step(pieces: list[str]) -> None:
        now = time.monotonic()
        for item, piece in zip(batch, pieces, strict=True):
            if piece:
                if item.first_piece is None:
                    item.first_piece = now
                if item.sink is not None:
                    item.sink(piece)

    return on_step


def load_generator(path: Any, *, threads: int | None, device: str | None) -> Generator:
    """Load a generative model folder for serving (``runtime.load_model`` calls this for their tasks)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return Generator.load(path, device=device)


# ---------------------------------------------------------------- request → items
def require_generative(served: ServedModel, name: str) -> None:
    """400 for generation routes on a model that cannot generate (e.g. a classifier)."""
    if served.handler.route != "generate":
        raise HTTPProblem(
            400,
            "not_generative",
            f"model {name!r} is a {served.current.task} model and cannot generate text (nor stream); "
            f"use /v1/models/{name}/{served.handler.route}",
        )


def resolve_params(
    model: LoadedModel,
    limits: GenerationLimits,
    *,
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    num_beams: int | None,
    stop: list[str] | str | None,
    stream: bool,
) -> GenerationParams:
    """The request's settings over the model's defaults; 422 when over the server's caps."""
    generator: Generator = model.predictor
    base = generator.default_params
    wanted = max_new_tokens if max_new_tokens is not None else min(base.max_new_tokens, limits.max_new_tokens)
    if wanted > limits.max_new_tokens:
        raise HTTPProblem(
            422,
            "max_new_tokens_too_large",
            f"max_new_tokens is {wanted}; this server allows at most {limits.max_new_tokens}",
            limit="max_new_tokens",
            max=limits.max_new_tokens,
            got=wanted,
        )
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    values = {
        "max_new_tokens": wanted,
        "temperature": base.temperature if temperature is None else temperature,
        "top_p": base.top_p if top_p is None else top_p,
        "num_beams": base.num_beams if num_beams is None else num_beams,
        "stop": tuple(stops) or base.stop,
    }
    if stream and values["num_beams"] != 1:
        raise HTTPProblem(
            422, "invalid_request", "stream: true needs num_beams: 1 (beam search cannot stream)"
        )
    try:
        return GenerationParams.model_validate(values)
    except ValidationError as err:
        raise invalid_request(err) from None


def prompt_cap(model: LoadedModel, limits: GenerationLimits) -> int:
    generator: Generator = model.predictor
    cap = generator.max_prompt_tokens
    return min(cap, limits.max_prompt_tokens) if limits.max_prompt_tokens else cap


def check_prompt(ids: list[int], cap: int, index: int) -> list[int]:
    if len(ids) > cap:
        raise HTTPProblem(
            413,
            "prompt_too_long",
            f"inputs[{index}] has {len(ids)} tokens; the limit is {cap} prompt tokens",
            limit="max_prompt_tokens",
            max=cap,
            got=len(ids),
            index=index,
        )
    return ids


def encode_items(
    model: LoadedModel,
    limits: GenerationLimits,
    prompts: Sequence[str],
    params: GenerationParams,
    *,
    stream: bool,
) -> list[GenItem]:
    """Tokenize the prompts with the model's own preprocessing and check the prompt cap (413)."""
    generator: Generator = model.predictor
    cap = prompt_cap(model, limits)
    items = []
    for i, prompt in enumerate(prompts):
        ids = generator.format.prompt_ids(generator.tokenizer, prompt)
        items.append(GenItem(prompt, check_prompt(ids, cap, i), params, stream=stream))
    return items


# ---------------------------------------------------------------- running
def start_job(
    state: ServerState, name: str, served: ServedModel, items: list[GenItem]
) -> asyncio.Future[Any]:
    """Queue ``items`` (cache + batcher); when the job ends its tokens and first-token times are recorded,
    also for a client that left (its rows were cancelled), and a failed job (timeout) stops its rows."""
    task = asyncio.ensure_future(served.infer(items))
    task.add_done_callback(functools.partial(_job_done, state, name, items))
    return task


def _job_done(state: ServerState, name: str, items: list[GenItem], task: asyncio.Future[Any]) -> None:
    if task.cancelled() or task.exception() is not None:
        for item in items:  # e.g. the request timed out: the worker stops these rows at its next step
            item.cancel.set()
        return
    _, outputs = task.result()
    done = [(item, out) for item, out in zip(items, outputs, strict=True) if item.generated]  # not cache hits
    state.metrics.observe_generation(
        name,
        sum(out.completion_tokens for _, out in done),
        [item.first_piece - item.created for item, _ in done if item.first_piece is not None],
    )


async def infer_until_disconnect(
    state: ServerState, name: str, served: ServedModel, items: list[GenItem], request: Request
) -> tuple[LoadedModel, list[GenerationResult]]:
    """The results of ``items``; a client that disconnects meanwhile cancels its rows (499)."""
    task = start_job(state, name, served, items)
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

    def __init__(self, state: ServerState, name: str, served: ServedModel, items: list[GenItem]) -> None:
        self.items = items
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for row, item in enumerate(items):
            item.sink = _threadsafe_put(loop, self.queue, row)
        self.task = start_job(state, name, served, items)
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
@router.post(
    "/v1/models/{name}/generate",
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {"required": True, "content": {JSON: {"schema": GenerateRequest.model_json_schema()}}}
    },
    summary="Generate text (JSON, or server-sent events with stream: true)",
    tags=["inference"],
)
async def generate(name: str, request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Continue each prompt with the model served as ``name``; ``stream: true`` sends pieces as SSE."""
    served, who = await state.admit(request, name)
    require_generative(served, name)
    body = await read_body(request, state.settings.limits.max_body_bytes)
    decoded = served.handler.decode_request(body, state.settings.limits)
    req: GenerateRequest = decoded.params
    model, limits = served.current, state.settings.generation
    params = resolve_params(
        model,
        limits,
        max_new_tokens=req.max_new_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        num_beams=req.num_beams,
        stop=req.stop,
        stream=req.stream,
    )
    items = encode_items(model, limits, decoded.items, params, stream=req.stream)
    if state.limiter.active:
        await state.spend(state.limiter.spend_chars(who, decoded.chars))
    _note(request, len(items))
    if req.stream:
        stream = await PieceStream(state, name, served, items).started()
        return StreamingResponse(native_events(stream), media_type="text/event-stream", headers=SSE_HEADERS)
    model, outputs = await infer_until_disconnect(state, name, served, items, request)
    return Response(served.handler.encode_response(model, outputs, None), media_type=JSON)


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


def _note(request: Request, inputs: int) -> None:
    info = request.scope.get("miniml")
    if info is not None:
        info["inputs"] = inputs

"""The one path every model route takes: admit → read body → decode (sizes, tokenize and cap) → prepare
(compile output constraints, off the event loop) → spend (characters, then the token reservation) → infer
or stream → encode (with the key's ``x-ratelimit-*`` headers on generation answers).

:func:`run_inference` is that sequence, once. What differs between routes is a :class:`Codec`: how a body
of its API dialect becomes the items the model's task hooks queue (``decode``), how they run (``infer``:
cache + batcher, waiting out a client that leaves), and how outputs become the dialect's answer
(``encode``, or server-sent ``events`` when streaming). The native codecs are here (``/predict``:
:data:`PREDICT`, ``/generate``: :data:`GENERATE`); the OpenAI dialect is :mod:`miniml.serve.openai`.

The body is read only after authentication, model lookup and the request budget answered (the native
routes name the model in the path); it is read bounded while streaming and parsed once, by pydantic-core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from miniml.serve.errors import HTTPProblem
from miniml.serve.requestinfo import request_info
from miniml.serve.streaming import SSE_HEADERS, PieceStream, infer_until_disconnect, native_events
from miniml.tasks.generative_serving import (
    GenerateRequest,
    cache_headers,
    constrain_items,
    encode_items,
    resolve_params,
    token_cost,
)

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel
    from miniml.serve.engine import ServedModel
    from miniml.serve.settings import ServeSettings
    from miniml.serve.state import ServerState

JSON = "application/json"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise body_too_large(int(declared), max_bytes)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:  # a lying or absent Content-Length: stop reading here
                raise body_too_large(size, max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut off by server.body_timeout_s (already answered 408)
        raise HTTPProblem(
            408, "incomplete_body", "the request body did not arrive completely", received=size
        ) from None
    return b"".join(chunks)


def body_too_large(size: int, max_bytes: int) -> HTTPProblem:
    return HTTPProblem(
        413,
        "body_too_large",
        f"request body of {size}+ bytes exceeds the limit of {max_bytes} bytes",
        limit="max_body_bytes",
        max=max_bytes,
    )


@dataclass(slots=True)
class Call:
    """One decoded request: the items to queue, its input characters (budget), what the codec keeps to
    answer (``params``), whether to stream, and the texts an access line may log. Generation calls also
    carry ``prepare`` (blocking work before queueing: compiling constraints), ``tokens`` (what the token
    budget reserves) and, once reserved, ``on_done`` (settles the reservation when the job ends)."""

    items: list[Any]
    chars: int
    params: Any = None
    stream: bool = False
    texts: list[str] | None = None
    hooks: Any = None  # the task's serving hooks that decoded it (they encode the answer too)
    prepare: Callable[[], None] | None = None
    tokens: int = 0
    on_done: Callable[[asyncio.Future[Any]], None] | None = None
    role: str = "champion"  # which version answered: champion, or a canary's challenger


class Codec(Protocol):
    """An API dialect over the task hooks (see the module docstring)."""

    route: ClassVar[str]  # the hooks' route this dialect needs: "predict", "generate"

    def parse(self, body: bytes) -> Any:
        """The parsed body, for dialects that name the model in it (``model_name``)."""
        ...

    def model_name(self, parsed: Any) -> str: ...

    def decode(self, served: ServedModel, body: Any, settings: ServeSettings) -> Call:
        """The raw (or parsed) body → a :class:`Call`: validation, size limits, tokenizing and caps."""
        ...

    async def infer(
        self, state: ServerState, name: str, served: ServedModel, call: Call, request: Request
    ) -> tuple[LoadedModel, list[Any]]: ...

    def encode(self, model: LoadedModel, outputs: list[Any], call: Call) -> Response: ...

    def events(self, stream: PieceStream, call: Call) -> AsyncIterator[bytes]: ...

    def wrong_route(self, served: ServedModel, name: str) -> HTTPProblem: ...


async def run_inference(
    state: ServerState, request: Request, codec: Codec, name: str | None = None
) -> Response:
    """Answer one inference request; ``name`` is the model from the path, None when the body names it."""
    access, limits = state.access, state.settings.limits
    record = access.authenticate(request)  # 401 before a byte of the body is read
    body: Any = None
    if name is None:
        body = codec.parse(await read_body(request, limits.max_body_bytes))
        name = codec.model_name(body)
    served, caller = await access.admit(request, name, record)
    if served.handler.route != codec.route:
        raise codec.wrong_route(served, name)
    if body is None:
        body = await read_body(request, limits.max_body_bytes)
    call = codec.decode(served, body, state.settings)
    if call.prepare is not None:
        await asyncio.to_thread(call.prepare)  # bounded (e.g. compile timeouts); 422 for a bad constraint
    await access.spend_chars(caller, call.chars)
    headers: dict[str, str] = {}
    if call.tokens:
        reservation = await access.reserve_tokens(caller, call.tokens)
        call.on_done, headers = reservation.settle, reservation.headers
    info = request_info(request.scope)
    if info is not None:
        info.inputs = len(call.items)
        if state.settings.logging.log_inputs and call.texts is not None:
            info.texts = call.texts
    if call.stream:
        stream = await PieceStream(state.metrics, name, served, call.items, call.on_done).started()
        return StreamingResponse(
            codec.events(stream, call), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
        )
    model, outputs = await codec.infer(state, name, served, call, request)
    if info is not None:
        info.version = model.version
    labels = served.handler.top_labels(model, outputs)
    state.metrics.count_predictions(name, labels)
    if served.monitored:  # model monitoring: drift window, prediction store, shadow
        rid, key = (info.request_id, info.key) if info is not None else ("", None)
        state.monitoring.observe(name, call.role, model, rid, key, call.items, outputs, labels)
        state.rollouts.after_answer(name, rid, call.items, labels)
    response = codec.encode(model, outputs, call)
    response.headers.update(headers)
    response.headers.update(cache_headers(call.items))
    return response


class PredictCodec:
    """``POST /v1/models/{name}/predict``: the task hooks' own request and response bodies."""

    route: ClassVar[str] = "predict"

    def parse(self, body: bytes) -> Any:
        return body

    def model_name(self, parsed: Any) -> str:
        raise NotImplementedError("the native routes name the model in the path")

    def decode(self, served: ServedModel, body: Any, settings: ServeSettings) -> Call:
        decoded = served.handler.decode_request(body, settings.limits)
        return Call(decoded.items, decoded.chars, decoded.params, texts=decoded.items, hooks=served.handler)

    async def infer(
        self, state: ServerState, name: str, served: ServedModel, call: Call, request: Request
    ) -> tuple[LoadedModel, list[Any]]:
        rollouts = state.rollouts
        if name not in rollouts.rollouts:
            return await served.infer(call.items)
        info = request_info(request.scope)  # a challenger next to this name: route, time, count by role
        rid, key = (info.request_id, info.key) if info is not None else ("", None)
        call.role, target = rollouts.pick(name, served, rid, key)
        started = time.perf_counter()
        model, outputs = await target.infer(call.items)
        rollouts.count(name, call.role, model, time.perf_counter() - started)
        return model, outputs

    def encode(self, model: LoadedModel, outputs: list[Any], call: Call) -> Response:
        return Response(call.hooks.encode_response(model, outputs, call.params), media_type=JSON)

    def events(self, stream: PieceStream, call: Call) -> AsyncIterator[bytes]:
        raise NotImplementedError("predictions are not streamed")

    def wrong_route(self, served: ServedModel, name: str) -> HTTPProblem:
        route = served.handler.route
        return HTTPProblem(
            400, "wrong_route", f"model {name!r} is not a classifier; use /v1/models/{name}/{route}"
        )


def not_generative(served: ServedModel, name: str) -> HTTPProblem:
    """400 for generation routes on a model that cannot generate (e.g. a classifier)."""
    return HTTPProblem(
        400,
        "not_generative",
        f"model {name!r} is a {served.current.task} model and cannot generate text (nor stream); "
        f"use /v1/models/{name}/{served.handler.route}",
    )


class GenerateCodec(PredictCodec):
    """``POST /v1/models/{name}/generate``: prompts in, generations (or server-sent events) out."""

    route: ClassVar[str] = "generate"

    def decode(self, served: ServedModel, body: Any, settings: ServeSettings) -> Call:
        """Validate; resolve the settings against the model's defaults and the caps; tokenize (413 over)."""
        decoded = served.handler.decode_request(body, settings.limits)
        request: GenerateRequest = decoded.params
        model, limits = served.current, settings.generation
        params = resolve_params(
            model,
            limits,
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            num_beams=request.num_beams,
            stop=request.stop,
            stream=request.stream,
        )
        items = encode_items(
            model, limits, decoded.items, params, stream=request.stream, use_cache=request.cache
        )
        return Call(
            items,
            decoded.chars,
            None,
            stream=request.stream,
            hooks=served.handler,
            prepare=lambda: constrain_items(model, limits, items, request.guided),
            tokens=token_cost(items),
        )

    async def infer(
        self, state: ServerState, name: str, served: ServedModel, call: Call, request: Request
    ) -> tuple[LoadedModel, list[Any]]:
        return await infer_until_disconnect(state.metrics, name, served, call.items, request, call.on_done)

    def events(self, stream: PieceStream, call: Call) -> AsyncIterator[bytes]:
        return native_events(stream)

    def wrong_route(self, served: ServedModel, name: str) -> HTTPProblem:
        return not_generative(served, name)


PREDICT = PredictCodec()
GENERATE = GenerateCodec()

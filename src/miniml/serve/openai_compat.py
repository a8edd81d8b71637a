"""OpenAI-compatible ``POST /v1/completions`` and ``POST /v1/chat/completions`` for generative models.

The request's ``model`` is a served model name; everything else follows the OpenAI API closely enough for
the official client: ``max_tokens`` (or ``max_completion_tokens``), ``temperature``, ``top_p``, ``stop``,
``stream`` (server-sent ``data:`` chunks ending with ``data: [DONE]``) and ``usage``. Only ``n: 1`` is
supported. Fields the server has no use for (``user``, ``seed``, penalties) are accepted and ignored, as
many clients send them. Auth, rate limits, caps, batching and metrics are the server's own: the same
keys work (``Authorization: Bearer KEY`` is what the client sends), and 401 / 429 come back as the client
expects them. A chat prompt goes through the model's chat template when its tokenizer has one; otherwise
the last user message is the prompt.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import StreamingResponse

from miniml.errors import MinimlError
from miniml.runtime.generation import GenerationResult, Generator
from miniml.serve.errors import HTTPProblem
from miniml.serve.generate import (
    JSON,
    SSE_HEADERS,
    PieceStream,
    error_event,
    infer_until_disconnect,
    require_generative,
    sse,
)
from miniml.serve.routes import read_body
from miniml.serve.schemas import ERROR_RESPONSES
from miniml.serve.state import ServerState, get_state
from miniml.tasks.generative_serving import GenItem, check_prompt, prompt_cap, resolve_params
from miniml.tasks.serving import check_sizes, invalid_request, normalize_text

router = APIRouter()
FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


class _OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str = Field(min_length=1, description="a served model name (GET /v1/models)")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")
    stop: str | list[str] | None = None
    stream: bool = False


class CompletionRequest(_OpenAIRequest):
    """``POST /v1/completions``."""

    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] = ""

    def text(self) -> str:
        """The message's text (content parts of type ``text`` joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class ChatRequest(_OpenAIRequest):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def parse(schema: type[_OpenAIRequest], body: bytes) -> Any:
    try:
        return schema.model_validate_json(body)
    except ValidationError as err:
        raise invalid_request(err) from None


async def admitted(
    request: Request, state: ServerState, schema: type[_OpenAIRequest]
) -> tuple[Any, Any, str]:
    """Auth before reading the body (401 first), then the body, then the model named in it."""
    state.authenticate(request)
    body = await read_body(request, state.settings.limits.max_body_bytes)
    req = parse(schema, body)
    served, who = await state.admit(request, req.model)
    require_generative(served, req.model)
    return req, served, who


def make_items(
    state: ServerState,
    served: Any,
    req: _OpenAIRequest,
    max_tokens: int | None,
    prompts: list[list[int]],
    texts: list[str],
) -> list[GenItem]:
    model, limits = served.current, state.settings.generation
    params = resolve_params(
        model,
        limits,
        max_new_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        num_beams=1,
        stop=req.stop,
        stream=req.stream,
    )
    cap = prompt_cap(model, limits)
    return [
        GenItem(text, check_prompt(ids, cap, i), params, stream=req.stream)
        for i, (ids, text) in enumerate(zip(prompts, texts, strict=True))
    ]


def usage(outputs: list[GenerationResult]) -> dict[str, int]:
    prompt = sum(r.prompt_tokens for r in outputs)
    completion = sum(r.completion_tokens for r in outputs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def envelope(kind: str, prefix: str, name: str) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{secrets.token_hex(12)}",
        "object": kind,
        "created": int(time.time()),
        "model": name,
    }


# ---------------------------------------------------------------- /v1/completions
def request_body(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a route that reads its body itself (nested models go to components)."""
    body = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {JSON: {"schema": body}}}}


@router.post(
    "/v1/completions",
    responses=ERROR_RESPONSES,
    openapi_extra=request_body(CompletionRequest),
    summary="OpenAI-compatible completions",
    tags=["openai"],
)
async def completions(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Continue ``prompt`` (a string or a list) with a generative model; ``stream: true`` sends SSE chunks."""
    req, served, who = await admitted(request, state, CompletionRequest)
    texts = [normalize_text(p) for p in ([req.prompt] if isinstance(req.prompt, str) else req.prompt)]
    if not texts:
        raise HTTPProblem(422, "invalid_request", "prompt: give at least one prompt")
    chars = check_sizes(texts, state.settings.limits)
    generator: Generator = served.current.predictor
    ids = [generator.format.prompt_ids(generator.tokenizer, t) for t in texts]
    items = make_items(state, served, req, req.max_tokens, ids, texts)
    if state.limiter.active:
        await state.spend(state.limiter.spend_chars(who, chars))
    head = envelope("text_completion", "cmpl", req.model)
    if req.stream:
        stream = await PieceStream(state, req.model, served, items).started()
        events = completion_events(head, stream)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    _, outputs = await infer_until_disconnect(state, req.model, served, items, request)
    choices = [
        {"text": r.text, "index": i, "logprobs": None, "finish_reason": FINISH[r.finish_reason]}
        for i, r in enumerate(outputs)
    ]
    return _json({**head, "choices": choices, "usage": usage(outputs)})


async def completion_events(head: dict[str, Any], stream: PieceStream) -> AsyncIterator[bytes]:
    async for row, piece in stream.pieces():
        yield sse(
            {**head, "choices": [{"text": piece, "index": row, "logprobs": None, "finish_reason": None}]}
        )
    try:
        _, outputs = stream.outcome()
    except Exception as err:
        yield error_event(err)
        return
    for row, result in enumerate(outputs):
        choice = {"text": "", "index": row, "logprobs": None, "finish_reason": FINISH[result.finish_reason]}
        yield sse({**head, "choices": [choice], "usage": usage(outputs) if row == len(outputs) - 1 else None})
    yield sse(b"[DONE]")


# ---------------------------------------------------------------- /v1/chat/completions
@router.post(
    "/v1/chat/completions",
    responses=ERROR_RESPONSES,
    openapi_extra=request_body(ChatRequest),
    summary="OpenAI-compatible chat completions",
    tags=["openai"],
)
async def chat_completions(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Answer a conversation with a generative model; ``stream: true`` sends SSE chunks."""
    req, served, who = await admitted(request, state, ChatRequest)
    messages = [{"role": m.role, "content": normalize_text(m.text())} for m in req.messages]
    chars = check_sizes([m["content"] for m in messages], state.settings.limits)
    generator: Generator = served.current.predictor
    try:
        ids = generator.chat_prompt_ids(messages)  # the prompt cap is checked in make_items (413)
    except MinimlError as err:  # e.g. a chat without a user message
        raise HTTPProblem(422, "invalid_request", str(err)) from None
    key = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages)
    items = make_items(state, served, req, req.max_completion_tokens or req.max_tokens, [ids], [key])
    if state.limiter.active:
        await state.spend(state.limiter.spend_chars(who, chars))
    head = envelope("chat.completion.chunk" if req.stream else "chat.completion", "chatcmpl", req.model)
    if req.stream:
        stream = await PieceStream(state, req.model, served, items).started()
        events = chat_events(head, stream)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    _, outputs = await infer_until_disconnect(state, req.model, served, items, request)
    result = outputs[0]
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": result.text},
        "finish_reason": FINISH[result.finish_reason],
    }
    return _json({**head, "choices": [choice], "usage": usage(outputs)})


async def chat_events(head: dict[str, Any], stream: PieceStream) -> AsyncIterator[bytes]:
    yield sse(
        {
            **head,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )
    async for _, piece in stream.pieces():
        yield sse({**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    try:
        _, outputs = stream.outcome()
    except Exception as err:
        yield error_event(err)
        return
    finish = FINISH[outputs[0].finish_reason]
    yield sse(
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage(outputs)}
    )
    yield sse(b"[DONE]")


def _json(body: dict[str, Any]) -> Response:
    import orjson

    return Response(orjson.dumps(body), media_type=JSON)

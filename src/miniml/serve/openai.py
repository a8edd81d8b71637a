"""The OpenAI dialect: ``/v1/completions`` and ``/v1/chat/completions`` as a codec over the generation hooks.

The request's ``model`` is a served model name; everything else follows the OpenAI API closely enough for
the official client: ``max_tokens`` (or ``max_completion_tokens``), ``temperature``, ``top_p``, ``stop``,
``stream`` (server-sent ``data:`` chunks ending with ``data: [DONE]``), ``usage`` and ``response_format``
(``json_schema`` / ``json_object``: guided decoding, streamed too). Parameters that would change the answer
but that the server cannot honour — ``n`` > 1, ``best_of`` > 1, ``logprobs`` / ``top_logprobs``, ``seed``,
``tools`` / ``functions``, ``logit_bias``, non-zero penalties, ``echo``, ``suffix`` — get a 400 naming the
parameter, never silent ignoring; bookkeeping fields (``user``, ``metadata``, ``store``,
``stream_options``) are accepted. Auth, rate limits (token budgets too), caps, batching and metrics are the
server's own: the same keys work (``Authorization: Bearer KEY`` is what the client sends), and 401 / 429
come back as the client expects them. A chat prompt goes through the model's chat template when its
tokenizer has one; otherwise the last user message is the prompt.

Each endpoint is a :class:`~miniml.serve.inference.Codec`: it parses the OpenAI body (which names the
model), turns prompts or messages into the generation hooks' items (the same token caps, 413 and 422 as
``/generate``), and writes OpenAI JSON or ``data:`` chunks; :func:`~miniml.serve.inference.run_inference`
does the rest, as for every route.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from miniml.errors import MinimlError
from miniml.guided.spec import JSON_OBJECT, GuidedSpec
from miniml.runtime.generation import GenerationResult, Generator
from miniml.serve.errors import HTTPProblem
from miniml.serve.inference import JSON, Call, not_generative
from miniml.serve.streaming import PieceStream, error_event, infer_until_disconnect, sse
from miniml.tasks.generative_serving import (
    GenItem,
    check_prompt,
    constrain_items,
    prompt_cap,
    resolve_params,
    token_cost,
)
from miniml.tasks.serving import check_sizes, normalize_text, parse_body

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel
    from miniml.serve.engine import ServedModel
    from miniml.serve.settings import ServeSettings
    from miniml.serve.state import ServerState

FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


class JsonSchemaFormat(BaseModel):
    """OpenAI's ``response_format.json_schema``."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: ``text``, ``json_object`` or ``json_schema``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def spec(self) -> GuidedSpec | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return JSON_OBJECT
        if self.json_schema is None or self.json_schema.schema_ is None:
            raise HTTPProblem(
                400, "invalid_request", "response_format.json_schema.schema: give the JSON schema to follow"
            )
        return GuidedSpec(json_schema=self.json_schema.schema_)


# Parameters that change the answer but that this server does not implement: value → is it a request for it?
UNSUPPORTED: dict[str, Any] = {
    "n": lambda v: v not in (None, 1),
    "best_of": lambda v: v not in (None, 1),
    "logprobs": lambda v: v not in (None, False, 0),
    "top_logprobs": lambda v: v not in (None, 0),
    "seed": lambda v: v is not None,
    "tools": lambda v: bool(v),
    "tool_choice": lambda v: v not in (None, "none"),
    "functions": lambda v: bool(v),
    "function_call": lambda v: v not in (None, "none"),
    "logit_bias": lambda v: bool(v),
    "presence_penalty": lambda v: v not in (None, 0, 0.0),
    "frequency_penalty": lambda v: v not in (None, 0, 0.0),
    "echo": lambda v: bool(v),
    "suffix": lambda v: bool(v),
}


class _OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(min_length=1, description="a served model name (GET /v1/models)")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    response_format: ResponseFormat | None = Field(
        None, description="json_schema / json_object: the answer follows it (guided decoding)"
    )
    cache: bool = Field(True, description="false: no cache answers or keeps it (miniml's own field)")

    def refuse_unsupported(self) -> None:
        """400 naming the first parameter the server cannot honour (see UNSUPPORTED)."""
        extra = self.model_extra or {}
        for name, asks in UNSUPPORTED.items():
            if name in extra and asks(extra[name]):
                raise HTTPProblem(
                    400,
                    "unsupported_parameter",
                    f"{name}={extra[name]!r} is not supported by this server; leave it out",
                    param=name,
                )

    def guided(self) -> GuidedSpec | None:
        """The constraint ``response_format`` asks for (None: the model's own, if any)."""
        return self.response_format.spec() if self.response_format is not None else None


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


def make_items(
    served: ServedModel,
    settings: ServeSettings,
    req: _OpenAIRequest,
    max_tokens: int | None,
    prompts: list[list[int]],
    texts: list[str],
) -> list[GenItem]:
    """The generation hooks' items: settings resolved against the model's defaults and caps; prompt cap."""
    model, limits = served.current, settings.generation
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
        GenItem(text, check_prompt(ids, cap, i), params, stream=req.stream, use_cache=req.cache)
        for i, (ids, text) in enumerate(zip(prompts, texts, strict=True))
    ]


def guided_call(
    served: ServedModel, settings: ServeSettings, req: _OpenAIRequest, call: Call, slot_texts: list[str]
) -> Call:
    """``call`` with its constraint compilation (``response_format``, else the model's own constraint with
    its slots filled from ``slot_texts``) and its token cost."""
    model, limits, spec, items = served.current, settings.generation, req.guided(), call.items
    call.prepare = lambda: constrain_items(model, limits, items, spec, slot_texts)
    call.tokens = token_cost(items)
    return call


class OpenAICodec:
    """What both OpenAI endpoints share: the model named in the body, generation, a client that leaves."""

    route: ClassVar[str] = "generate"
    schema: ClassVar[type[_OpenAIRequest]]

    def parse(self, body: bytes) -> Any:
        req = parse_body(self.schema, body)
        req.refuse_unsupported()
        return req

    def model_name(self, parsed: Any) -> str:
        return str(parsed.model)

    async def infer(
        self, state: ServerState, name: str, served: ServedModel, call: Call, request: Request
    ) -> tuple[LoadedModel, list[Any]]:
        return await infer_until_disconnect(state.metrics, name, served, call.items, request, call.on_done)

    def wrong_route(self, served: ServedModel, name: str) -> HTTPProblem:
        return not_generative(served, name)


class CompletionsCodec(OpenAICodec):
    """``POST /v1/completions``: ``prompt`` (a string or a list) → ``choices[].text``."""

    schema = CompletionRequest

    def decode(self, served: ServedModel, body: Any, settings: ServeSettings) -> Call:
        req: CompletionRequest = body
        texts = [normalize_text(p) for p in ([req.prompt] if isinstance(req.prompt, str) else req.prompt)]
        if not texts:
            raise HTTPProblem(422, "invalid_request", "prompt: give at least one prompt")
        chars = check_sizes(texts, settings.limits)
        generator: Generator = served.current.predictor
        ids = [generator.format.prompt_ids(generator.tokenizer, t) for t in texts]
        items = make_items(served, settings, req, req.max_tokens, ids, texts)
        head = envelope("text_completion", "cmpl", req.model)
        return guided_call(served, settings, req, Call(items, chars, head, stream=req.stream), texts)

    def encode(self, model: LoadedModel, outputs: list[Any], call: Call) -> Response:
        choices = [
            {"text": r.text, "index": i, "logprobs": None, "finish_reason": FINISH[r.finish_reason]}
            for i, r in enumerate(outputs)
        ]
        return _json({**call.params, "choices": choices, "usage": usage(outputs)})

    def events(self, stream: PieceStream, call: Call) -> AsyncIterator[bytes]:
        return completion_events(call.params, stream)


class ChatCodec(OpenAICodec):
    """``POST /v1/chat/completions``: ``messages`` → ``choices[0].message``."""

    schema = ChatRequest

    def decode(self, served: ServedModel, body: Any, settings: ServeSettings) -> Call:
        req: ChatRequest = body
        messages = [{"role": m.role, "content": normalize_text(m.text())} for m in req.messages]
        chars = check_sizes([m["content"] for m in messages], settings.limits)
        generator: Generator = served.current.predictor
        try:
            ids = generator.chat_prompt_ids(messages)  # the prompt cap is checked in make_items (413)
        except MinimlError as err:  # e.g. a chat without a user message
            raise HTTPProblem(422, "invalid_request", str(err)) from None
        key = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages)
        items = make_items(served, settings, req, req.max_completion_tokens or req.max_tokens, [ids], [key])
        kind = "chat.completion.chunk" if req.stream else "chat.completion"
        call = Call(items, chars, envelope(kind, "chatcmpl", req.model), stream=req.stream)
        contents = "\n".join(m["content"] for m in messages)  # a model constraint's slots come from here
        return guided_call(served, settings, req, call, [contents])

    def encode(self, model: LoadedModel, outputs: list[Any], call: Call) -> Response:
        result = outputs[0]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": FINISH[result.finish_reason],
        }
        return _json({**call.params, "choices": [choice], "usage": usage(outputs)})

    def events(self, stream: PieceStream, call: Call) -> AsyncIterator[bytes]:
        return chat_events(call.params, stream)


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
    return Response(orjson.dumps(body), media_type=JSON)


COMPLETIONS = CompletionsCodec()
CHAT = ChatCodec()

"""The serving hooks of generative models (seq2seq, causal_lm): prompts in, generations out.

Requests of many clients share the server's batcher like classification does: each prompt is one queued
item (:class:`GenItem`), and the worker generates for a whole batch in one ``Generator.run`` per sampling
setting, every row with its own token cap, stop strings and cancel flag. Each step's text pieces go to the
items' ``sink`` (streaming) through :func:`_dispatcher`. Prompts are tokenized with the model's own format
before queueing (:func:`encode_items`), so a prompt over the cap is a 413 before any model time is spent;
the request's settings are checked against the server's caps (:func:`resolve_params`). A row may carry a
compiled constraint (structured outputs, :mod:`miniml.guided`); its text is part of the cache key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from miniml.errors import RequestError
from miniml.guided.compiler import CompiledConstraint, ConstraintError, GuidedLimits
from miniml.guided.spec import GuidedSpec
from miniml.runtime.generation import GenerationParams, GenerationResult, Generator
from miniml.tasks.serving import (
    Decoded,
    RequestLimits,
    check_sizes,
    invalid_request,
    normalize_text,
    parse_body,
)

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel


class GenerationLimits(Protocol):
    """The server's generation caps (``generation:`` in the serve config)."""

    max_new_tokens: int
    max_prompt_tokens: int | None
    guided: GuidedLimits


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
    guided: GuidedSpec | None = Field(
        None,
        description="structured output: every answer follows this constraint (default: the model's own "
        "constraint, if it has one)",
    )
    cache: bool = Field(
        True, description="false: neither the response cache nor the semantic cache answers or keeps it"
    )


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
    constraint: CompiledConstraint | None = None  # the row's compiled structured-output constraint
    guided_key: str = ""  # what constrains it, for the cache key ("" none, "model", or the spec's text)
    use_cache: bool = True  # false: the request opted out of the caches (``cache: false``)
    cache_hit: str = ""  # set by the server: "exact" or "semantic" when a cache answered it
    similarity: float | None = None  # the semantic hit's cosine similarity


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
    """The serving hooks of generative models (see the module docstring)."""

    route: ClassVar[str] = "generate"
    codec = ResultCodec()
    request_schema: ClassVar[type[BaseModel]] = GenerateRequest

    def decode_request(self, body: bytes, limits: RequestLimits) -> Decoded[str]:
        """Validated prompts (normalised) and the request; tokenizing needs the model (``encode_items``)."""
        request = parse_body(GenerateRequest, body)
        chars = check_sizes(request.inputs, limits)
        return Decoded([normalize_text(t) for t in request.inputs], request, chars)

    def cache_key(self, item: GenItem) -> str | None:
        """Greedy, non-streamed generations are deterministic: cache them by prompt and settings."""
        key = self.semantic_key(item)
        return None if key is None else f"{key[0]}\x1f{item.prompt}"

    def semantic_key(self, item: GenItem) -> tuple[str, str] | None:
        """(settings, prompt text) for the semantic cache: the exact key's two parts (None: not cached)."""
        if item.stream or item.params.temperature > 0 or not item.use_cache:
            return None
        text = item.prompt.replace("\x1e", "\n").replace("\x1f", ": ")  # a chat's turns as lines
        return f"{item.params.model_dump_json()}\x1f{item.guided_key}", text

    def semantic_answer(self, item: GenItem, data: bytes) -> GenerationResult:
        """A cached answer for ``item``: its text, with this prompt's own token count (``usage``)."""
        cached = self.codec.loads(data)
        return GenerationResult(cached.text, len(item.ids), cached.completion_tokens, cached.finish_reason)

    def note_hit(self, item: GenItem, kind: str, similarity: float | None = None) -> None:
        item.cache_hit, item.similarity = kind, similarity

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
                [x.ids for x in batch],
                [x.params for x in batch],
                [x.cancel for x in batch],
                on_step,
                [x.constraint for x in batch],
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
        params = GenerationParams.model_validate({"max_new_tokens": 2})
        generator.generate(["warm up"], params, truncate=True, use_model_constraint=False)
        if generator.constraint is not None:
            _ = generator.guide  # the model's constraint compiler (its token index) before the first request


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


# ---------------------------------------------------------------- request → items
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
        raise RequestError(
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
        raise RequestError(
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
        raise RequestError(
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
    use_cache: bool = True,
) -> list[GenItem]:
    """Tokenize the prompts with the model's own preprocessing and check the prompt cap (413)."""
    generator: Generator = model.predictor
    cap = prompt_cap(model, limits)
    items = []
    for i, prompt in enumerate(prompts):
        ids = generator.format.prompt_ids(generator.tokenizer, prompt)
        items.append(GenItem(prompt, check_prompt(ids, cap, i), params, stream=stream, use_cache=use_cache))
    return items


def cache_headers(items: Sequence[Any]) -> dict[str, str]:
    """``x-miniml-cache`` (``exact``, ``semantic`` or ``miss`` per prompt, comma-separated) and, when a
    semantic hit answered, ``x-miniml-cache-similarity``; none when no cache answered."""
    if not items or not isinstance(items[0], GenItem) or not any(x.cache_hit for x in items):
        return {}
    headers = {"x-miniml-cache": ", ".join(x.cache_hit or "miss" for x in items)}
    if any(x.similarity is not None for x in items):
        headers["x-miniml-cache-similarity"] = ", ".join(
            "-" if x.similarity is None else f"{x.similarity:.4f}" for x in items
        )
    return headers


def constrain_items(
    model: LoadedModel,
    limits: GenerationLimits,
    items: Sequence[GenItem],
    spec: GuidedSpec | None,
    texts: Sequence[str] | None = None,
) -> None:
    """Compile each row's constraint: the request's ``spec``, else the model's own (its slots filled from
    ``texts``, default the rows' prompts). 422 naming the problem when one is invalid, too big or too slow
    to compile (bounded by ``limits.guided``). Blocking: the server runs it off the event loop."""
    generator: Generator = model.predictor
    if spec is None and generator.constraint is None:
        return
    sources = list(texts) if texts is not None else [x.prompt for x in items]
    try:
        compiled = [generator.constraint_for(text, spec, limits=limits.guided) for text in sources]
    except ConstraintError as err:
        raise RequestError(422, err.code, str(err)) from None
    key = "model" if spec is None else f"{spec.kind}:{spec.text()}"
    for item, constraint in zip(items, compiled, strict=True):
        item.constraint, item.guided_key = constraint, key


def token_cost(items: Sequence[GenItem]) -> int:
    """What a request reserves of a token budget: its prompt tokens plus ``max_new_tokens`` per row."""
    return sum(len(x.ids) + x.params.max_new_tokens for x in items)

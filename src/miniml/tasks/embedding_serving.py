"""The serving hooks of embedding models: ``POST /v1/embeddings`` (OpenAI shape), texts in, vectors out.

The request is OpenAI's: ``input`` (a string or a list of strings), ``model``, ``encoding_format`` (``float``,
or ``base64``: little-endian float32 bytes, what the official client asks for by default), ``dimensions``
(fewer dimensions, for models trained to allow it: ``truncation`` in the model's ``miniml.json``) and
``user`` (ignored). Inputs are validated before anything is queued: an empty text is a 422, a text over the
model's ``max_tokens`` a 413 (never cut silently), ``dimensions`` the model cannot give a 422. Each text is
one queued item, batched with other requests' texts; a text's vector is cached under the text (the full
vector: ``dimensions`` is applied when answering). ``usage.prompt_tokens`` counts the tokens the model read.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import DataError, ModelError, RequestError
from miniml.runtime.embedder import Embedder, truncate
from miniml.tasks.serving import Decoded, Float32Codec, RequestLimits, check_sizes, normalize_text, parse_body

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel

WARM_UP = ("warm up", "Hej, hvordan har du det i dag?", "Ünïcödé 123 !? ÆØÅ")


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: texts to embed."""

    model_config = ConfigDict(
        extra="ignore",
        protected_namespaces=(),
        json_schema_extra={"examples": [{"model": "paraphrase", "input": ["How many rows?", "Count them"]}]},
    )

    input: str | list[str] = Field(description="a text or a list of texts (limits.max_inputs at most)")
    model: str | None = Field(None, min_length=1, description="a served model name (GET /v1/models)")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32")
    dimensions: int | None = Field(None, ge=1, description="fewer dimensions (models with truncation only)")
    user: str | None = Field(None, description="ignored")

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


@dataclass(frozen=True, slots=True)
class EmbedItem:
    """One text on its way through the batcher, with its token count (usage)."""

    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class EmbedParams:
    """What the answer needs beyond the vectors."""

    model: str
    encoding_format: str
    dimensions: int | None
    prompt_tokens: int


def check_texts(embedder: Embedder, texts: Sequence[str]) -> list[int]:
    """Token counts of ``texts``; an empty text or one over ``max_tokens`` is a DataError naming it."""
    for i, text in enumerate(texts):
        if not text.strip():
            raise DataError(f"input {i} is empty; an embedding needs some text", hint="drop empty inputs")
    tokens = embedder.count_tokens(texts)
    cap = embedder.settings.max_tokens
    for i, count in enumerate(tokens):
        if count > cap:
            raise DataError(
                f"input {i} has {count} tokens; model {embedder.info.name} reads at most {cap}",
                hint="split the text into shorter passages",
            )
    return tokens


def embed_items(model: LoadedModel, texts: list[str]) -> list[EmbedItem]:
    """The batcher's items: empty texts 422, texts over the token cap 413 (before any model time)."""
    embedder: Embedder = model.predictor
    for i, text in enumerate(texts):
        if not text:
            raise RequestError(422, "empty_input", f"input[{i}] is empty; an embedding needs some text")
    tokens = embedder.count_tokens(texts)
    cap = embedder.settings.max_tokens
    for i, count in enumerate(tokens):
        if count > cap:
            raise RequestError(
                413,
                "too_many_tokens",
                f"input[{i}] has {count} tokens; model {model.name!r} reads at most {cap} per input "
                "(split the text)",
                limit="max_tokens",
                max=cap,
                got=count,
                index=i,
            )
    return [EmbedItem(t, n) for t, n in zip(texts, tokens, strict=True)]


def check_dimensions(model: LoadedModel, dimensions: int | None) -> int | None:
    """``dimensions`` the model can give (None: all); 422 when it has fewer or does not allow truncation."""
    if dimensions is None:
        return None
    settings = model.predictor.settings
    if dimensions > settings.dimensions:
        raise RequestError(
            422,
            "invalid_dimensions",
            f"dimensions is {dimensions}; model {model.name!r} gives {settings.dimensions}",
            max=settings.dimensions,
            got=dimensions,
        )
    if dimensions < settings.dimensions and not settings.truncation:
        raise RequestError(
            422,
            "invalid_dimensions",
            f"model {model.name!r} gives {settings.dimensions} dimensions and was not trained to be cut "
            "shorter (truncation: false); drop dimensions",
        )
    return dimensions if dimensions < settings.dimensions else None


def encode_embeddings(model: LoadedModel, outputs: list[np.ndarray], params: EmbedParams) -> bytes:
    """The OpenAI answer: ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}]}``."""
    vectors = np.stack(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)  # (N, D)
    if params.dimensions is not None:
        vectors = truncate(vectors, params.dimensions, model.predictor.settings.normalize)
    vectors = np.asarray(vectors, dtype="<f4")
    data: list[Any] = (
        [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
        if params.encoding_format == "base64"
        else vectors.tolist()
    )
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
        "model": params.model,
        "usage": {"prompt_tokens": params.prompt_tokens, "total_tokens": params.prompt_tokens},
    }
    return orjson.dumps(body)


class EmbeddingHandler:
    """The hooks of embedding models (see the module docstring)."""

    route: ClassVar[str] = "embeddings"
    codec = Float32Codec()
    request_schema: ClassVar[type[BaseModel]] = EmbeddingsRequest

    def decode_request(self, body: bytes | EmbeddingsRequest, limits: RequestLimits) -> Decoded[str]:
        """Validated, normalised texts; the request as ``params`` (tokenizing needs the model)."""
        request = body if isinstance(body, EmbeddingsRequest) else parse_body(EmbeddingsRequest, body)
        texts = request.texts()
        if not texts:
            raise RequestError(422, "invalid_request", "input: give at least one text")
        chars = check_sizes(texts, limits)
        return Decoded([normalize_text(t) for t in texts], request, chars)

    def cache_key(self, item: EmbedItem) -> str | None:
        return item.text

    def predict(self, model: LoadedModel, items: list[EmbedItem]) -> Sequence[np.ndarray]:
        vectors = model.predictor.embed([x.text for x in items])  # (B, D)
        if not np.isfinite(vectors).all():
            raise RequestError(
                500, "non_finite_output", f"model {model.name!r} produced embeddings that are not finite"
            )
        return list(vectors)

    def encode_response(self, model: LoadedModel, outputs: list[np.ndarray], params: Any) -> bytes:
        return encode_embeddings(model, outputs, params)

    def top_labels(self, model: LoadedModel, outputs: list[np.ndarray]) -> list[str]:
        return []

    def warm_up(self, model: LoadedModel) -> None:
        """Refuse a model whose embeddings have the wrong shape or are not finite (load and alias swap)."""
        embedder: Embedder = model.predictor
        vectors = embedder.embed(list(WARM_UP))
        if vectors.shape != (len(WARM_UP), embedder.dimensions) or not np.isfinite(vectors).all():
            raise ModelError(
                f"model {model.name} gave embeddings of shape {vectors.shape} (or not finite) for "
                f"{len(WARM_UP)} texts; expected {embedder.dimensions} dimensions",
                hint="the model folder is inconsistent: retrain or restore it",
            )

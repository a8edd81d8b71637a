"""Task handlers: how requests of one task become model inputs, and model outputs become responses.

The server owns queues, batching, caching, auth, limits and metrics once for every task; a handler only
supplies the hooks (after LitServe's ``decode_request / batch / predict / unbatch / encode_response``):

- ``decode_request(body, limits)`` → :class:`Decoded`: validated per-input items + response parameters;
- ``cache_key(item)``: what identifies an item's output (None: never cache it);
- ``predict(model, items)``: one output per item — batch, forward pass and unbatch, on the worker thread;
- ``encode_response(model, outputs, params)``: the JSON body;
- ``codec``: bytes for a shared cache; ``top_labels`` for per-class metrics; ``warm_up`` after loading.

Handlers are registered per task name in :data:`HANDLERS`; a generative task adds its own with
``route = "generate"``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import orjson
from pydantic import ValidationError

from miniml.errors import ModelError
from miniml.serve.cache import Codec
from miniml.serve.errors import HTTPProblem
from miniml.serve.schemas import PredictRequest
from miniml.serve.settings import BatchingSettings, RequestLimits

if TYPE_CHECKING:
    from miniml.serve.runtime import LoadedModel

X = TypeVar("X")
Y = TypeVar("Y")


@dataclass(frozen=True, slots=True)
class Decoded(Generic[X]):
    """A validated request: one item per input, parameters for the response, input size for budgets."""

    items: list[X]
    params: Any
    chars: int


class TaskHandler(Protocol[X, Y]):
    """The hooks a task gives the server (see the module docstring)."""

    route: ClassVar[str]
    codec: Codec[Y]

    def decode_request(self, body: bytes, limits: RequestLimits) -> Decoded[X]: ...

    def cache_key(self, item: X) -> str | None: ...

    def predict(self, model: LoadedModel, items: list[X]) -> Sequence[Y]: ...

    def encode_response(self, model: LoadedModel, outputs: list[Y], params: Any) -> bytes: ...

    def top_labels(self, model: LoadedModel, outputs: list[Y]) -> list[str]: ...

    def warm_up(self, model: LoadedModel) -> None: ...


def normalize_text(text: str) -> str:
    """Unicode NFC and no surrounding whitespace: equal keys in the cache mean equal model inputs."""
    return unicodedata.normalize("NFC", text).strip()


def invalid_request(err: ValidationError) -> HTTPProblem:
    """A pydantic validation error as a 422 naming each bad field."""
    errors = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in err.errors()[:10]
    ]
    first = errors[0]
    where = ".".join(first["loc"]) or "body"
    return HTTPProblem(422, "invalid_request", f"{where}: {first['msg']}", errors=errors)


def check_sizes(texts: list[str], limits: RequestLimits) -> int:
    """Enforce inputs-per-request and characters-per-input limits (413 naming the limit); total chars."""
    if len(texts) > limits.max_inputs:
        raise HTTPProblem(
            413,
            "too_many_inputs",
            f"{len(texts)} inputs in one request; the limit is {limits.max_inputs} (split the request)",
            limit="max_inputs",
            max=limits.max_inputs,
            got=len(texts),
        )
    chars = 0
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise HTTPProblem(
                413,
                "input_too_long",
                f"inputs[{i}] has {len(text)} characters; the limit is {limits.max_chars} per input",
                limit="max_chars",
                max=limits.max_chars,
                got=len(text),
                index=i,
            )
        chars += len(text)
    return chars


class Float32Codec:
    """A probability vector as little-endian float32 bytes."""

    def dumps(self, value: np.ndarray) -> bytes:
        return np.asarray(value, dtype="<f4").tobytes()

    def loads(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype="<f4")


class ClassificationHandler:
    """``POST /v1/models/{name}/predict``: texts in, label + score + top-k out.

    With ``micro_batch_size`` a merged batch runs as length-sorted chunks of that many texts: a transformer
    on CPU pads every text to the longest of its chunk, and sorting first cuts that waste (MiniLM on SST-5,
    one core: 19.6 ms/text as one batch of 32, 12.4 ms/text as sorted chunks of 8). Unset, the chunk size
    follows the runtime (``default_chunk``): ONNX Runtime is fastest on small chunks, torch eager on larger
    ones, and models without padding (hashing n-grams) run each batch whole.
    """

    route: ClassVar[str] = "predict"
    codec: Codec[np.ndarray] = Float32Codec()

    def __init__(self, micro_batch_size: int | None = None) -> None:
        self.micro_batch_size = micro_batch_size

    def decode_request(self, body: bytes, limits: RequestLimits) -> Decoded[str]:
        try:
            request = PredictRequest.model_validate_json(body)
        except ValidationError as err:
            raise invalid_request(err) from None
        chars = check_sizes(request.inputs, limits)
        return Decoded([normalize_text(t) for t in request.inputs], request.top_k, chars)

    def cache_key(self, item: str) -> str | None:
        return item

    def predict(self, model: LoadedModel, items: list[str]) -> Sequence[np.ndarray]:
        """One probability row per text, computed in length-sorted chunks when the model pads."""
        size = self.micro_batch_size or default_chunk(model)
        if size is None or len(items) <= size:
            probs: np.ndarray = model.predictor.predict_proba(items)  # (B, C) float32
            check_rows(model, probs)
            return list(probs)  # unbatch: one (C,) row per input
        order = sorted(range(len(items)), key=lambda i: len(items[i]))  # similar lengths share a chunk
        rows: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(items)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            probs = model.predictor.predict_proba([items[i] for i in chunk])
            check_rows(model, probs)
            for i, row in zip(chunk, probs, strict=True):
                rows[i] = row
        return rows

    def encode_response(self, model: LoadedModel, outputs: list[np.ndarray], params: Any) -> bytes:
        labels = model.info.labels
        probs = np.stack(outputs)  # (N, C)
        k = min(int(params), probs.shape[1])
        # (N, k) label indices, best first
        best = probs.argmax(axis=1)[:, None] if k == 1 else np.argsort(-probs, axis=1, kind="stable")[:, :k]
        predictions = []
        for row, idx in zip(probs, best, strict=True):
            top = [{"label": labels[j], "score": row[j]} for j in idx]
            predictions.append({"label": top[0]["label"], "score": top[0]["score"], "top_k": top})
        body = {"model": model.name, "version": model.version, "predictions": predictions}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def top_labels(self, model: LoadedModel, outputs: list[np.ndarray]) -> list[str]:
        labels = model.info.labels
        return [labels[int(row.argmax())] for row in outputs]

    def warm_up(self, model: LoadedModel) -> None:
        """Refuse a model whose scores have the wrong shape or are not finite (at load and alias swap)."""
        from miniml.inference import check_predictor

        check_predictor(model.predictor)


class NonFiniteOutput(HTTPProblem):
    """The model produced NaN or infinite scores: a broken model, never answered as ``null`` scores (500)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            500,
            "non_finite_output",
            f"model {model!r} produced scores that are not finite; it has been logged",
        )


def check_rows(model: LoadedModel, probs: np.ndarray) -> None:
    """Fail the batch (then each request on its own, see the batcher) when a row is not finite."""
    if not np.isfinite(probs).all():
        raise NonFiniteOutput(model.name)


# Texts per chunk by runtime, for models that pad (tokenizers). MiniLM on SST-5, 2 cores, 16 clients: ONNX
# Runtime 153 req/s in chunks of 4 vs 136 in chunks of 8; torch 115 texts/s in chunks of 16 vs 110 in 8.
_CHUNK = {"onnx": 4, "torch": 16}
_PADDED = {"tokenizer", "vocab"}


def default_chunk(model: LoadedModel) -> int | None:
    """Length-sorted chunk size for a model that pads its batches; None (one pass) for one that does not."""
    if model.info.preprocessing.get("kind") not in _PADDED:
        return None
    return _CHUNK.get(model.info.runtime)


def classification_handler(settings: BatchingSettings) -> ClassificationHandler:
    return ClassificationHandler(micro_batch_size=settings.micro_batch_size)


def generation_handler(settings: BatchingSettings) -> TaskHandler[Any, Any]:
    from miniml.serve.generate import GenerationHandler  # seq2seq / causal_lm (issue 5)

    return GenerationHandler()


HANDLERS: dict[str, Callable[[BatchingSettings], TaskHandler[Any, Any]]] = {
    "classification": classification_handler,
    "seq2seq": generation_handler,
    "causal_lm": generation_handler,
}


def handler_for(task: str, settings: BatchingSettings) -> TaskHandler[Any, Any]:
    """The handler of ``task``; a clear ModelError if the server cannot serve it."""
    factory = HANDLERS.get(task)
    if factory is None:
        raise ModelError(
            f"the server has no handler for {task} models",
            hint=f"serve one of: {', '.join(sorted(HANDLERS))}",
        )
    return factory(settings)

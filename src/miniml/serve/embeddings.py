"""``POST /v1/embeddings`` and ``POST /v1/models/{name}/embeddings``: a codec over the embedding hooks.

OpenAI's request and answer (``input``, ``model``, ``encoding_format: float | base64``, ``dimensions``;
``{"object": "list", "data": [...], "usage": ...}``), written by
:mod:`miniml.tasks.embedding_serving`. The rest is :func:`~miniml.serve.inference.run_inference`, as for
every route: authentication, the model lookup (404), the request and character budgets, size limits, the
response cache (per text: a request with some cached texts embeds only the others), the batcher (texts of
concurrent requests share a forward pass) and the metrics. An embedding's prompt tokens count against the
key's token budget (``ratelimit.tokens``) like a generation's, and the answer carries ``x-ratelimit-*``.

Errors: an empty text 422 ``empty_input``, a text over the model's ``max_tokens`` 413 ``too_many_tokens``
(``limit: max_tokens``; never cut), ``dimensions`` larger than the model's or on a model without
``truncation`` 422 ``invalid_dimensions``, a model that is not an embedding model 400 ``wrong_route``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from miniml.serve.errors import HTTPProblem
from miniml.serve.inference import Call, PredictCodec
from miniml.tasks.embedding_serving import (
    EmbeddingsRequest,
    EmbedParams,
    check_dimensions,
    embed_items,
)
from miniml.tasks.serving import parse_body

if TYPE_CHECKING:
    from miniml.serve.engine import ServedModel
    from miniml.serve.settings import ServeSettings


class EmbeddingsCodec(PredictCodec):
    """OpenAI's embeddings dialect: the model is named in the body (``/v1/embeddings``) or the path."""

    route: ClassVar[str] = "embeddings"

    def parse(self, body: bytes) -> Any:
        return parse_body(EmbeddingsRequest, body)

    def model_name(self, parsed: Any) -> str:
        if parsed.model is None:
            raise HTTPProblem(422, "invalid_request", "model: name a served model (GET /v1/models)")
        return str(parsed.model)

    def decode(self, served: ServedModel, body: Any, settings: ServeSettings) -> Call:
        """Validate sizes, ``dimensions`` and each text's tokens (before any queueing)."""
        decoded = served.handler.decode_request(body, settings.limits)
        request: EmbeddingsRequest = decoded.params
        model = served.current
        dimensions = check_dimensions(model, request.dimensions)
        items = embed_items(model, decoded.items)
        tokens = sum(x.tokens for x in items)
        params = EmbedParams(served.name, request.encoding_format, dimensions, tokens)
        call = Call(items, decoded.chars, params, texts=decoded.items, hooks=served.handler)
        call.tokens = tokens
        return call

    def wrong_route(self, served: ServedModel, name: str) -> HTTPProblem:
        return HTTPProblem(
            400,
            "wrong_route",
            f"model {name!r} is a {served.current.task} model, not an embedding model; "
            f"use /v1/models/{name}/{served.handler.route}",
        )


EMBEDDINGS = EmbeddingsCodec()

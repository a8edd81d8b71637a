"""Request and response bodies of the HTTP API, with examples for the OpenAPI page at /docs.

Request bodies are the tasks' own (``PredictRequest``, ``GenerateRequest``: their serving hooks validate each
body in one ``model_validate_json`` pass); responses on the hot path are written with orjson directly in
these shapes rather than built as models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="probability of the label")


class Prediction(BaseModel):
    """The answer for one input."""

    label: str = Field(description="the most probable label")
    score: float = Field(description="its probability")
    top_k: list[LabelScore] = Field(description="the top_k labels, best first")


class PredictResponse(BaseModel):
    """One prediction per input, in input order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "nordic-langid",
                    "version": 3,
                    "predictions": [
                        {
                            "label": "da",
                            "score": 0.97,
                            "top_k": [{"label": "da", "score": 0.97}, {"label": "nb", "score": 0.02}],
                        }
                    ],
                }
            ]
        }
    )

    model: str
    version: int | None = Field(description="registry version that answered; null for a folder")
    predictions: list[Prediction]


class ModelCard(BaseModel):
    """A served model: OpenAI's model object (``id``, ``object``, ``created``, ``owned_by``) plus miniml's
    own fields."""

    model_config = ConfigDict(protected_namespaces=())

    id: str = Field(description="the served name (OpenAI clients' model id)")
    object: Literal["model"] = "model"
    created: int = Field(description="when this version was loaded, seconds since the epoch")
    owned_by: str = "miniml"
    name: str
    version: int | None
    alias: str | None = Field(description="the alias being followed, if loaded by models:/NAME@ALIAS")
    uri: str
    task: str
    runtime: str = Field(description="torch or onnx (onnxruntime), from the model folder's miniml.json")
    labels: list[str]
    loaded_at: str
    batching: str | None = Field(
        None, description="generative models: continuous, or static (and why the model cannot step)"
    )


class ModelList(BaseModel):
    """OpenAI's list shape; ``models`` repeats ``data`` for miniml clients of the earlier shape."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
    models: list[ModelCard]


class CardResponse(BaseModel):
    """A served model's model card."""

    model: str
    version: int | None = Field(description="registry version served; null for a folder")
    card: str = Field(description="README.md of the model folder: YAML front matter, then Markdown")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"], description="ready | loading | draining")
    models: dict[str, int | None] = Field(description="served model → version")
    replicas: dict[str, str] | None = Field(
        default=None,
        description="Ray Serve only: each live replica → ready | loading | draining | failed: reason",
    )
    ready_replicas: int | None = Field(default=None, description="Ray Serve only: replicas that are ready")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(examples=["too_many_inputs"])
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer (4xx, 5xx)."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "the model cannot answer this route (e.g. /generate on a classifier), or a bad request",
        401: "missing or unknown API key",
        403: "the key may not use this model",
        404: "no such model",
        413: "a size limit was exceeded (body bytes, inputs per request, characters per input)",
        422: "malformed JSON or wrong types",
        429: "rate limit exceeded (see Retry-After)",
        503: "queue full, model loading or server draining (see Retry-After)",
        504: "no result within the request timeout",
    }.items()
}

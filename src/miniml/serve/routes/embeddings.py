"""``POST /v1/embeddings`` (the model named in the body, as OpenAI clients send it) and
``POST /v1/models/{name}/embeddings`` (named in the path): the codec is :mod:`miniml.serve.embeddings`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from miniml.serve.embeddings import EMBEDDINGS
from miniml.serve.inference import run_inference
from miniml.serve.routes.openai import request_body
from miniml.serve.schemas import ERROR_RESPONSES
from miniml.serve.state import ServerState, get_state
from miniml.tasks.embedding_serving import EmbeddingsRequest

router = APIRouter()
BODY = request_body(EmbeddingsRequest)


@router.post(
    "/v1/embeddings",
    responses=ERROR_RESPONSES,
    openapi_extra=BODY,
    summary="OpenAI-compatible embeddings",
    tags=["openai"],
)
async def embeddings(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Embed ``input`` (a text or a list) with the embedding model named by ``model``."""
    return await run_inference(state, request, EMBEDDINGS)


@router.post(
    "/v1/models/{name}/embeddings",
    responses=ERROR_RESPONSES,
    openapi_extra=BODY,
    summary="Embed texts",
    tags=["inference"],
)
async def model_embeddings(name: str, request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Embed ``input`` with the model served as ``name`` (the body's ``model`` may be left out)."""
    return await run_inference(state, request, EMBEDDINGS, name)

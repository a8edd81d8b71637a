"""``POST /v1/models/{name}/generate``: prompts in, generations out (server-sent events with ``stream``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from miniml.serve.inference import GENERATE, JSON, run_inference
from miniml.serve.schemas import ERROR_RESPONSES
from miniml.serve.state import ServerState, get_state
from miniml.tasks.generative_serving import GenerateRequest

router = APIRouter()
BODY = {"requestBody": {"required": True, "content": {JSON: {"schema": GenerateRequest.model_json_schema()}}}}


@router.post(
    "/v1/models/{name}/generate",
    responses=ERROR_RESPONSES,
    openapi_extra=BODY,
    summary="Generate text (JSON, or server-sent events with stream: true)",
    tags=["inference"],
)
async def generate(name: str, request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Continue each prompt with the model served as ``name``; ``stream: true`` sends pieces as SSE."""
    return await run_inference(state, request, GENERATE, name)

"""``POST /v1/completions``, ``POST /v1/chat/completions``: the OpenAI dialect (``serve/openai.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from miniml.serve.inference import JSON, run_inference
from miniml.serve.openai import CHAT, COMPLETIONS, ChatRequest, CompletionRequest
from miniml.serve.schemas import ERROR_RESPONSES
from miniml.serve.state import ServerState, get_state

router = APIRouter()


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
    return await run_inference(state, request, COMPLETIONS)


@router.post(
    "/v1/chat/completions",
    responses=ERROR_RESPONSES,
    openapi_extra=request_body(ChatRequest),
    summary="OpenAI-compatible chat completions",
    tags=["openai"],
)
async def chat_completions(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Answer a conversation with a generative model; ``stream: true`` sends SSE chunks."""
    return await run_inference(state, request, CHAT)

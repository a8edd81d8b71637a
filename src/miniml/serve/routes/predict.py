"""``POST /v1/models/{name}/predict``, reached two ways with the same behaviour.

The FastAPI route documents it in OpenAPI; :class:`PredictFastPath`, an ASGI dispatcher in front of the
app, sends the same requests straight to :func:`~miniml.serve.inference.run_inference`. FastAPI's routing
and dependency solving cost more CPU per request than everything the predict path does itself (measured:
in-process, ~400 → ~150 µs), and that CPU is what bounds requests/s on a small machine.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from miniml.serve.errors import HTTPProblem, problem_response
from miniml.serve.inference import JSON, PREDICT, run_inference
from miniml.serve.requestinfo import request_info
from miniml.serve.schemas import ERROR_RESPONSES, PredictResponse
from miniml.serve.state import ServerState, get_state
from miniml.tasks.classification_serving import PredictRequest

router = APIRouter()
PREFIX = "/v1/models/"
SUFFIX = "/predict"
PREDICT_ROUTE = PREFIX + "{name}" + SUFFIX
BODY = {"requestBody": {"required": True, "content": {JSON: {"schema": PredictRequest.model_json_schema()}}}}


@router.post(
    PREDICT_ROUTE,  # mostly answered by PredictFastPath
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=BODY,
    summary="Classify texts",
    tags=["inference"],
)
async def predict(name: str, request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Label, score and top-k labels for each input, from the model served as ``name``."""
    return await run_inference(state, request, PREDICT, name)


class PredictFastPath:
    """ASGI dispatcher: ``POST /v1/models/{name}/predict`` → ``run_inference``, the rest → the app."""

    def __init__(self, app: ASGIApp, *, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and path.startswith(PREFIX)
            and path.endswith(SUFFIX)
        ):
            name = path[len(PREFIX) : -len(SUFFIX)]
            if name and "/" not in name:
                info = request_info(scope)
                if info is not None:
                    info.route = PREDICT_ROUTE
                try:
                    response = await run_inference(self.state, Request(scope, receive), PREDICT, name)
                except HTTPProblem as problem:
                    response = problem_response(problem, info.request_id if info else None)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

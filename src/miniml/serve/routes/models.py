"""``GET /v1/models``: the served models the caller's key may use."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from miniml.serve.schemas import ERROR_RESPONSES, ModelCard, ModelList
from miniml.serve.state import ServerState, get_state

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, tags=["models"])
async def list_models(request: Request, state: ServerState = Depends(get_state)) -> ModelList:
    """The served models the caller's key may use: name, version, alias, task, labels."""
    record = state.access.authenticate(request)
    cards = []
    for served in state.models:
        if state.access.allowed(record, served.name):
            m = served.current
            cards.append(
                ModelCard(
                    name=m.name,
                    version=m.version,
                    alias=m.alias,
                    uri=m.uri,
                    task=m.task,
                    runtime=m.info.runtime,
                    labels=m.info.labels,
                    loaded_at=m.loaded_at,
                )
            )
    return ModelList(models=cards)

"""``GET /v1/models`` (OpenAI's list shape) and ``GET /v1/models/{name}``: the served models the caller's key
may use."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request

from miniml.serve.engine import ServedModel
from miniml.serve.errors import HTTPProblem
from miniml.serve.schemas import ERROR_RESPONSES, ModelCard, ModelList
from miniml.serve.state import ServerState, get_state

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, tags=["models"])
async def list_models(request: Request, state: ServerState = Depends(get_state)) -> ModelList:
    """The served models the caller's key may use, in OpenAI's list shape (``data``; ``models`` too)."""
    record = state.access.authenticate(request)
    cards = [model_card(s) for s in state.models if state.access.allowed(record, s.name)]
    return ModelList(data=cards, models=cards)


@router.get("/v1/models/{name}", response_model=ModelCard, responses=ERROR_RESPONSES, tags=["models"])
async def get_model(name: str, request: Request, state: ServerState = Depends(get_state)) -> ModelCard:
    """One served model (OpenAI's ``models.retrieve``): 404 if not served, 403 if the key may not use it."""
    record = state.access.authenticate(request)
    served = state.models.get(name)
    if served is None:
        raise HTTPProblem(
            404, "model_not_found", f"no model named {name!r} is served; GET /v1/models lists them"
        )
    if record is not None and not record.allows(name):
        raise HTTPProblem(403, "forbidden", f"key {record.name!r} may not use model {name!r}")
    return model_card(served)


def model_card(served: ServedModel) -> ModelCard:
    """OpenAI's model object (``id``, ``created``) with miniml's fields (version, task, batching, ...)."""
    m = served.current
    try:
        created = int(datetime.fromisoformat(m.loaded_at).timestamp())
    except ValueError:
        created = 0
    return ModelCard(
        id=m.name,
        created=created,
        name=m.name,
        version=m.version,
        alias=m.alias,
        uri=m.uri,
        task=m.task,
        runtime=m.info.runtime,
        labels=m.info.labels,
        loaded_at=m.loaded_at,
        batching=served.batching,
    )

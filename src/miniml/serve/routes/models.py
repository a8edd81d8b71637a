"""``GET /v1/models`` (OpenAI's list shape) and ``GET /v1/models/{name}``: the served models the caller's key
may use; ``GET /v1/models/{name}/card``: the model card of one of them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request

from miniml.modelcard import CARD_FILE, render_card
from miniml.serve.engine import ServedModel
from miniml.serve.errors import HTTPProblem
from miniml.serve.schemas import ERROR_RESPONSES, CardResponse, ModelCard, ModelList
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


@router.get(
    "/v1/models/{name}/card",
    response_model=CardResponse,
    responses=ERROR_RESPONSES,
    summary="The model card (README.md) of a served model",
    tags=["models"],
)
async def get_model_card(
    name: str, request: Request, state: ServerState = Depends(get_state)
) -> CardResponse:
    """The card of the version being served: its folder's ``README.md`` (rendered from its
    ``miniml.json`` for folders written before cards existed). Same key checks as predict."""
    served, _ = await state.access.admit(request, name, state.access.authenticate(request))
    model = served.current
    file = model.path / CARD_FILE
    text = file.read_text(encoding="utf-8") if file.is_file() else render_card(model.info)
    return CardResponse(model=model.name, version=model.version, card=text)

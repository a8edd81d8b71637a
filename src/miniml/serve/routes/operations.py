"""Operations: ``/healthz`` (alive), ``/readyz`` (models loaded, not draining), ``/metrics`` (Prometheus).

They need a key unless listed in ``auth.open_routes`` (all three by default).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from miniml.serve.inference import JSON
from miniml.serve.schemas import Health, Readiness
from miniml.serve.state import ServerState, get_state

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["operations"])
async def healthz(request: Request, state: ServerState = Depends(get_state)) -> Health:
    """The process is alive (answers while loading and draining too)."""
    state.access.check_open(request)
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "loading or draining"}},
    tags=["operations"],
)
async def readyz(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Every model is loaded and the server is not draining (else 503)."""
    state.access.check_open(request)
    body = Readiness(status=state.status, models={s.name: s.current.version for s in state.models})
    status = 200 if state.status == "ready" else 503
    return Response(body.model_dump_json(), status_code=status, media_type=JSON)


@router.get("/metrics", tags=["operations"], response_class=Response)
async def metrics(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Prometheus metrics in the text exposition format."""
    state.access.check_open(request)
    await state.monitoring.refresh()  # drift verdicts are computed on demand, off the event loop
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

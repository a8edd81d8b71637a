"""Operations: ``/healthz`` (alive), ``/readyz`` (models loaded, not draining), ``/metrics`` (Prometheus).

They need a key unless listed in ``auth.open_routes`` (all three by default). On Ray Serve, ``/readyz`` and
``/metrics`` answer for every replica of the application (:mod:`miniml.serve.peers`): ready when at least one
replica is, with each replica's status; the metrics of every live replica, each with its ``replica`` label.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from miniml.serve.inference import JSON
from miniml.serve.peers import exchange, merge_expositions, readiness
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
    """Every model is loaded and the server is not draining (else 503). On Ray Serve: at least one replica
    is ready (``replicas``: each live replica's status, ``ready_replicas``: how many are ready)."""
    state.access.check_open(request)
    body = Readiness(status=state.status, models={s.name: s.current.version for s in state.models})
    if state.peers is not None:
        reports = await exchange(state.peers, state.status, None, taken=time.monotonic(), fetch=True)
        replicas = readiness(reports) if reports else {state.peers.replica: state.status}
        body.replicas = replicas
        body.ready_replicas = sum(1 for s in replicas.values() if s == "ready")
        if body.ready_replicas:
            body.status = "ready"
    status = 200 if body.status == "ready" else 503
    return Response(body.model_dump_json(exclude_none=True), status_code=status, media_type=JSON)


@router.get("/metrics", tags=["operations"], response_class=Response)
async def metrics(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Prometheus metrics in the text exposition format."""
    state.access.check_open(request)
    await state.monitoring.refresh()  # drift verdicts are computed on demand, off the event loop
    taken = time.monotonic()
    own = state.metrics.render()
    if state.peers is not None:  # every live replica's series (this one's included, as just rendered)
        reports = await exchange(state.peers, state.status, own.decode(), taken=taken, fetch=True)
        if reports:
            own = merge_expositions(r.text for r in reports if r.text).encode()
    return Response(own, media_type=CONTENT_TYPE_LATEST)

"""``create_app(settings)`` as a library: models load in the lifespan; state is a swappable dependency."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from miniml.serve import ServeSettings, create_app
from miniml.serve.state import ServerState, get_state


def test_create_app_loads_models_in_its_lifespan(toy_model: Path) -> None:
    app = create_app(ServeSettings(models=[str(toy_model)]))
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ready", "models": {"toy": None}}
        r = client.post("/v1/models/toy/predict", json={"inputs": ["jag bor i stockholm"]})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "sv"
        state: ServerState = app.state.miniml
        state.status = "draining"  # what SIGTERM does: load balancers stop sending traffic
        assert client.get("/readyz").status_code == 503


def test_state_dependency_can_be_overridden(toy_model: Path) -> None:
    app = create_app(ServeSettings(models=[str(toy_model)]))
    other = ServerState(ServeSettings(models=[str(toy_model)], auth={"open_routes": []}))
    app.dependency_overrides[get_state] = lambda: other
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # the overriding state has no keys: auth is off
        assert client.get("/v1/models").json() == {"models": []}  # and it loaded nothing

"""``create_app(settings)`` as a library: models load in the lifespan; state is a swappable dependency."""

from __future__ import annotations

from pathlib import Path

import pytest
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
        empty = {"object": "list", "data": [], "models": []}
        assert client.get("/v1/models").json() == empty  # and it loaded nothing


def test_a_bug_is_a_json_500_with_the_request_id(toy_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ServeSettings(models=[str(toy_model)]))

    def broken() -> ServerState:
        raise RuntimeError("state went missing")

    app.dependency_overrides[get_state] = broken
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/healthz")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == r.headers["x-request-id"]
    assert "state went missing" not in r.text  # details go to the log, not to the client
    logged = [r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == error["request_id"]]
    assert logged and logged[0].exc_info and "state went missing" in caplog.text

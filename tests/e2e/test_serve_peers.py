"""Two replicas of the server (two apps, as two Ray Serve replicas run them) sharing the real replica board
through :class:`~miniml.backends.ray.board.BoardPeers`: ``/metrics`` on either answers every replica's
series, ``/readyz`` says how many are ready, a stopped or failed replica shows, a board that fails leaves each
replica answering for itself. The Ray transport itself is covered by ``test_serve_ray.py``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from miniml.backends.ray.board import BoardPeers, ReplicaBoard
from miniml.errors import MinimlError
from miniml.serve import ServeSettings, create_app

PREDICT = "/v1/models/toy/predict"


class Handle:
    """What BoardPeers uses of a DeploymentHandle (``handle.method.remote(*args)``, awaited), calling the
    board in this process."""

    def __init__(self, board: Any) -> None:
        self.board = board

    def __getattr__(self, name: str) -> SimpleNamespace:
        method = getattr(self.board, name)

        async def call(*args: Any) -> Any:
            return method(*args)

        return SimpleNamespace(remote=call)


def replica(toy_model: Path, board: Any, name: str) -> TestClient:
    app = create_app(ServeSettings(models=[str(toy_model)]))
    state = app.state.miniml
    state.metrics.label_every_series("replica", name)
    state.peers = BoardPeers(Handle(board), name, period_s=0.05)
    return TestClient(app)


def predict_totals(text: str) -> dict[str, float]:
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    requests = next(f for f in families if f.name == "miniml_requests")
    return {
        s.labels["replica"]: s.value
        for s in requests.samples
        if s.name == "miniml_requests_total" and s.labels["route"] == "/v1/models/{name}/predict"
    }


def test_either_replica_answers_for_both(toy_model: Path) -> None:
    board = ReplicaBoard()
    with replica(toy_model, board, "a") as a, replica(toy_model, board, "b") as b:
        for client, n in ((a, 2), (b, 3)):
            for _ in range(n):
                assert client.post(PREDICT, json={"inputs": ["jag bor i stockholm"]}).status_code == 200
        b.get("/metrics")  # a scrape reports the answering replica's series as they are now
        assert predict_totals(a.get("/metrics").text) == {"a": 2.0, "b": 3.0}
        assert predict_totals(b.get("/metrics").text) == {"a": 2.0, "b": 3.0}
        ready = a.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "models": {"toy": None},
            "replicas": {"a": "ready", "b": "ready"},
            "ready_replicas": 2,
        }
        a.app.state.miniml.status = "draining"  # type: ignore[attr-defined]
        ready = a.get("/readyz")  # this replica drains; b still serves
        assert ready.status_code == 200 and ready.json()["ready_replicas"] == 1
        assert ready.json()["replicas"] == {"a": "draining", "b": "ready"}
        a.app.state.miniml.status = "ready"  # type: ignore[attr-defined]
    with replica(toy_model, board, "c") as c:  # a and b stopped and left the board
        assert c.get("/readyz").json()["replicas"] == {"c": "ready"}
        assert set(predict_totals(c.get("/metrics").text)) <= {"c"}


def test_a_replica_that_fails_to_load_shows_as_failed(toy_model: Path, tmp_path: Path) -> None:
    board = ReplicaBoard()
    app = create_app(ServeSettings(models=[str(tmp_path / "missing")]))
    app.state.miniml.peers = BoardPeers(Handle(board), "broken", period_s=0.05)
    with pytest.raises(MinimlError), TestClient(app):
        pass
    with replica(toy_model, board, "a") as a:
        ready = a.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready_replicas"] == 1
        assert ready.json()["replicas"]["a"] == "ready"
        assert ready.json()["replicas"]["broken"].startswith("failed: "), ready.json()


class DownBoard:
    def exchange(self, *args: Any) -> Any:
        raise ConnectionError("the board's node died")

    def leave(self, replica: str) -> None:
        raise ConnectionError("the board's node died")


def test_a_board_that_fails_leaves_each_replica_answering_for_itself(toy_model: Path) -> None:
    with replica(toy_model, DownBoard(), "a") as a:
        assert a.post(PREDICT, json={"inputs": ["hej"]}).status_code == 200
        assert predict_totals(a.get("/metrics").text) == {"a": 1.0}
        ready = a.get("/readyz")
        assert ready.status_code == 200 and ready.json()["replicas"] == {"a": "ready"}


def test_the_local_server_answers_as_before(toy_model: Path) -> None:
    with TestClient(create_app(ServeSettings(models=[str(toy_model)]))) as client:
        assert client.get("/readyz").json() == {"status": "ready", "models": {"toy": None}}
        assert 'replica="' not in client.get("/metrics").text

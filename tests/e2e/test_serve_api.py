"""The real server in a subprocess over HTTP: predict, auth, limits, rate limits, cache, docs, logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_support import ServerProcess


def post(server: ServerProcess, body: object, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/models/toy/predict", content=data, headers=headers, timeout=10)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_predict_gives_label_score_and_top_k(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    r = post(
        server,
        {"inputs": ["hej med dig hvordan går det", "jag heter anna och bor i stockholm"], "top_k": 2},
        keys["admin"],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "toy" and body["version"] is None
    first, second = body["predictions"]
    assert first["label"] == "da" and second["label"] == "sv"
    assert first["top_k"][0]["label"] == "da" and len(first["top_k"]) == 2
    assert 0.5 < first["score"] <= 1 and first["top_k"][0]["score"] >= first["top_k"][1]["score"]
    assert r.headers["x-request-id"]


def test_answers_equal_offline_predictions(api_server: tuple[ServerProcess, dict], toy_model: Path) -> None:
    from miniml.tasks import load_predictor

    server, keys = api_server
    texts = [
        "det er fint her",
        "jag heter anna och bor i stockholm idag",
        "hej",
        "eg veit ikkje kva eg skal seie",
    ]
    served = post(server, {"inputs": texts, "top_k": 3}, keys["admin"]).json()["predictions"]
    offline = load_predictor(toy_model).predict_proba(texts)  # (4, 3), labels in info order
    labels = ["da", "nn", "sv"]
    for row, answer in zip(offline, served, strict=True):  # length-sorted micro-batches of 2 on the server
        assert {t["label"]: t["score"] for t in answer["top_k"]} == pytest.approx(
            dict(zip(labels, row.tolist(), strict=True)),
            abs=1e-6,  # scores: 6 decimals (one decoder)
        )


def test_x_api_key_and_client_request_id(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    r = post(
        server,
        {"inputs": ["eg veit ikkje kva eg skal seie"]},
        **{"X-API-Key": keys["admin"], "X-Request-ID": "abc-123"},
    )
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "nn"
    assert r.headers["x-request-id"] == "abc-123"


def test_auth_failures(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    missing = post(server, {"inputs": ["hej"]})
    assert missing.status_code == 401 and error_code(missing) == "missing_api_key"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = post(server, {"inputs": ["hej"]}, keys["admin"] + "x")
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_api_key"
    forbidden = post(server, {"inputs": ["hej"]}, keys["other"])
    assert forbidden.status_code == 403 and error_code(forbidden) == "forbidden"
    unknown = httpx.post(
        f"{server.url}/v1/models/nope/predict",
        json={"inputs": ["x"]},
        headers={"Authorization": f"Bearer {keys['admin']}"},
    )
    assert unknown.status_code == 404 and error_code(unknown) == "model_not_found"
    models = httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": keys["other"]}).json()
    assert models["models"] == models["data"] == []  # a key sees only the models it may use
    assert httpx.get(f"{server.url}/v1/models").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"x" * 5000, 413, "body_too_large"),
        ({"inputs": ["a"] * 5}, 413, "too_many_inputs"),
        ({"inputs": ["ok", "y" * 201]}, 413, "input_too_long"),
        (b'{"inputs": ["unclosed', 422, "invalid_request"),
        ({"inputs": [1, 2]}, 422, "invalid_request"),
        ({"inputs": "one string"}, 422, "invalid_request"),
        ({"inputs": ["a"], "top_k": 0}, 422, "invalid_request"),
    ],
)
def test_limits_and_bad_bodies_are_4xx_json(
    api_server: tuple[ServerProcess, dict], body: object, status: int, code: str
) -> None:
    server, keys = api_server
    r = post(server, body, keys["admin"])
    assert r.status_code == status, r.text
    assert error_code(r) == code and r.json()["error"]["message"]


def test_body_limit_holds_without_content_length(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check up front
        for _ in range(10):
            yield b" " * 1000

    r = httpx.post(
        f"{server.url}/v1/models/toy/predict",
        content=chunks(),
        headers={"Authorization": f"Bearer {keys['admin']}"},
    )
    assert r.status_code == 413 and error_code(r) == "body_too_large"


def test_rate_limits_answer_429_with_retry_after(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    statuses = [post(server, {"inputs": ["hej"]}, keys["metered"]).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = post(server, {"inputs": ["hej"]}, keys["metered"])
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["budget"] == "requests"
    assert post(server, {"inputs": ["x" * 50]}, keys["wordy"]).status_code == 200
    chars = post(server, {"inputs": ["x" * 50]}, keys["wordy"])
    assert chars.status_code == 429 and chars.json()["error"]["budget"] == "chars"
    assert post(server, {"inputs": ["hej"]}, keys["admin"]).status_code == 200  # budgets are per key


def metric(server: ServerProcess, line_start: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


def test_cache_answers_repeated_inputs_per_input(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    hits = metric(server, 'miniml_cache_hits_total{kind="exact",model="toy"}')
    first = post(server, {"inputs": ["det er fint her no"]}, keys["admin"]).json()
    both = post(server, {"inputs": ["det er fint her no", "jag bor i stockholm idag"]}, keys["admin"]).json()
    assert both["predictions"][0] == first["predictions"][0]
    hits_now = metric(server, 'miniml_cache_hits_total{kind="exact",model="toy"}')
    assert hits_now == hits + 1  # partial hit: 1 of 2


def test_health_ready_metrics_are_open_and_docs_describe_predict(
    api_server: tuple[ServerProcess, dict],
) -> None:
    server, _ = api_server
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "models": {"toy": None}}
    text = httpx.get(f"{server.url}/metrics").text
    for series in (
        "miniml_requests_total",
        "miniml_request_duration_seconds_bucket",
        "miniml_batch_size_bucket",
        "miniml_queue_depth",
        "miniml_model_info",
        "miniml_predictions_total",
        "miniml_rate_limited_total",
    ):
        assert series in text, series
    spec = httpx.get(f"{server.url}/openapi.json").json()
    op = spec["paths"]["/v1/models/{name}/predict"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["examples"]
    assert {"200", "401", "413", "429", "503"} <= set(op["responses"])
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_unknown_route_and_method_are_json(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    r = httpx.get(f"{server.url}/nope")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = httpx.get(f"{server.url}/v1/models/toy/predict", headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_access_log_is_json_with_key_name_never_the_key(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    post(
        server, {"inputs": ["secret text about stockholm"]}, keys["admin"], **{"X-Request-ID": "log-check-1"}
    )
    import time

    time.sleep(0.5)  # access lines are flushed every 0.2 s
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("request_id") == "log-check-1"]
    assert access and access[0]["key"] == "admin" and access[0]["status"] == 200
    assert access[0]["route"] == "/v1/models/{name}/predict" and access[0]["latency_ms"] > 0
    log = server.log()
    assert all(key not in log for key in keys.values())
    assert "secret text about stockholm" not in log


def test_trailing_slashes_are_404_not_redirects(api_server: tuple[ServerProcess, dict]) -> None:
    server, keys = api_server
    headers = {"Authorization": f"Bearer {keys['admin']}", "Host": "evil.example"}
    r = httpx.post(f"{server.url}/v1/models/toy/predict/", json={"inputs": ["hej"]}, headers=headers)
    assert r.status_code == 404 and "location" not in r.headers and error_code(r) == "not_found"
    r = httpx.get(f"{server.url}/v1/models/", headers=headers)
    assert r.status_code == 404 and "location" not in r.headers


def test_403_access_lines_name_the_key_and_metrics_hide_key_names(
    api_server: tuple[ServerProcess, dict],
) -> None:
    import time

    server, keys = api_server
    r = post(server, {"inputs": ["hej"]}, keys["other"], **{"X-Request-ID": "forbidden-1"})
    assert r.status_code == 403
    time.sleep(0.5)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    (line,) = [e for e in lines if e.get("request_id") == "forbidden-1"]
    assert line["status"] == 403 and line["key"] == "other" and line["model"] == "toy"
    while post(server, {"inputs": ["hej"]}, keys["metered"]).status_code != 429:
        pass
    text = httpx.get(f"{server.url}/metrics").text
    assert 'miniml_rate_limited_total{budget="requests",key="*"}' in text
    assert "metered" not in text and "wordy" not in text and "admin" not in text


def test_openapi_declares_bodies_errors_and_security(api_server: tuple[ServerProcess, dict]) -> None:
    server, _ = api_server
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer KEY",
    }
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    for path in ("/v1/completions", "/v1/chat/completions"):
        op = spec["paths"][path]["post"]
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert "model" in body["properties"] and "400" in op["responses"]
        assert op["security"] == [{"bearer": []}, {"apiKey": []}]
    chat = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert chat["schema"]["properties"]["messages"]["items"]["$ref"] == "#/components/schemas/ChatMessage"
    assert "ChatMessage" in spec["components"]["schemas"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []  # open routes need no key


def test_model_card_endpoint(api_server: tuple[ServerProcess, dict], toy_model: Path) -> None:
    server, keys = api_server
    url = f"{server.url}/v1/models/toy/card"
    assert httpx.get(url, timeout=10).status_code == 401
    other = httpx.get(url, headers={"Authorization": f"Bearer {keys['other']}"}, timeout=10)
    assert other.status_code == 403 and error_code(other) == "forbidden"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"model": "toy", "version": None, "card": (toy_model / "README.md").read_text()}
    gone = httpx.get(f"{server.url}/v1/models/nope/card", headers={"X-API-Key": keys["admin"]}, timeout=10)
    assert gone.status_code == 404 and error_code(gone) == "model_not_found"
    page = httpx.get(f"{server.url}/ui", timeout=10)  # the page itself needs no key: it holds no data
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]

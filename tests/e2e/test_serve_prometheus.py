"""A real Prometheus scrapes the server with deploy/prometheus.yml; every series and every Grafana panel query
of deploy/grafana/miniml.json is answered through Prometheus' HTTP API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from serve_support import REPO, ServerProcess, prometheus_server, wait_until


def query(prom: str, expr: str) -> dict:
    body = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]


def test_prometheus_scrapes_every_series_and_dashboard_queries_run(
    api_server: tuple[ServerProcess, dict], tmp_path: Path
) -> None:
    server, keys = api_server
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    for i in range(5):
        httpx.post(
            f"{server.url}/v1/models/toy/predict", json={"inputs": [f"hej med dig {i % 2}"]}, headers=headers
        )
    with prometheus_server(tmp_path, f"127.0.0.1:{server.port}") as prom:
        wait_until(lambda: query(prom, 'up{job="miniml"} == 1')["result"], 30, "a successful scrape")
        for series in (
            "miniml_requests_total",
            "miniml_request_duration_seconds_bucket",
            "miniml_batch_size_bucket",
            "miniml_batch_duration_seconds_bucket",
            "miniml_queue_depth",
            "miniml_cache_hits_total",
            "miniml_cache_misses_total",
            "miniml_predictions_total",
            "miniml_model_info",
            "miniml_model_version",
            "miniml_drift_detected",
            "miniml_drift_window_inputs",
        ):
            assert query(prom, f'{series}{{model="toy"}}')["result"], series
        info = query(prom, 'miniml_model_info{model="toy"}')["result"][0]["metric"]
        assert info["task"] == "classification" and info["job"] == "miniml"

        dashboard = json.loads((REPO / "deploy" / "grafana" / "miniml.json").read_text())
        exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
        assert len(exprs) >= 18
        for expr in exprs:  # Grafana's variables, as Grafana would fill them in
            query(prom, expr.replace("$model", ".*").replace("$__rate_interval", "1m"))

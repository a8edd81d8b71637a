"""Bounded queue → 503 + Retry-After, request timeout → 504, SIGTERM drains in-flight requests and exits 0."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serve_support import ServerProcess, wait_until


def predict(server: ServerProcess, n_inputs: int, timeout: float = 20) -> httpx.Response:
    body = {"inputs": [f"hej med dig {i}" for i in range(n_inputs)]}
    return httpx.post(f"{server.url}/v1/models/toy/predict", json=body, timeout=timeout)


def queue_depth(server: ServerProcess) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith('miniml_queue_depth{model="toy"}'):
            return float(line.rsplit(" ", 1)[1])
    return -1


def test_full_queue_is_503_and_slow_result_is_504(toy_model: Path, tmp_path: Path) -> None:
    # The worker waits up to 1.5 s for a batch to fill (longer than the 1 s request timeout); queue: 8 inputs.
    sets = [
        "batching.max_wait_ms=1500",
        "batching.request_timeout_s=1",
        "batching.queue_size=8",
        "limits.max_inputs=8",
        "cache.backend=none",
    ]
    server = ServerProcess([str(toy_model), *(a for s in sets for a in ("--set", s))], tmp_path).wait_ready()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(predict, server, 5)
        time.sleep(0.3)
        full = predict(server, 5)
        slow = first.result()
    assert full.status_code == 503, full.text
    assert full.json()["error"]["code"] == "queue_full" and int(full.headers["retry-after"]) >= 1
    assert slow.status_code == 504, slow.text
    assert slow.json()["error"]["code"] == "timeout"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'status="503"' in metrics and 'status="504"' in metrics
    assert server.terminate() == 0


def test_sigterm_drains_in_flight_requests_and_exits_0(toy_model: Path, tmp_path: Path) -> None:
    sets = ["batching.max_wait_ms=3000", "batching.max_batch_size=64", "cache.backend=none"]
    server = ServerProcess([str(toy_model), *(a for s in sets for a in ("--set", s))], tmp_path).wait_ready()
    with ThreadPoolExecutor(6) as pool:
        in_flight = [pool.submit(predict, server, 2) for _ in range(6)]
        wait_until(lambda: queue_depth(server) == 12, 10, "six requests queued")  # all in flight
        server.proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in in_flight]
    assert [a.status_code for a in answers] == [200] * 6
    assert all(len(a.json()["predictions"]) == 2 for a in answers)
    assert server.proc.wait(30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)
    assert server.terminate() == 0

"""Helpers of the Ray Serve tests: a local two-node Ray cluster, closed-loop load, replica rows, metrics."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from serve_support import REPO, free_port


@contextlib.contextmanager
def two_node_cluster(cpus_per_node: int = 1) -> Iterator[str]:
    """``ray.cluster_utils.Cluster`` with two nodes of one CPU each, in processes of their own; yields the
    GCS address. Every port is a free one (no fixed default port can collide with another cluster)."""
    from ray.cluster_utils import Cluster

    def node_args() -> dict[str, object]:
        return {
            "num_cpus": cpus_per_node,
            "object_store_memory": 80 * 1024 * 1024,
            "dashboard_agent_listen_port": free_port(),
            "metrics_export_port": free_port(),
            "runtime_env_agent_port": free_port(),
        }

    # On a loaded 2-core machine Serve's proxy can miss its 5 s readiness check and be killed: wait longer
    slow = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in slow.items():
            mp.setenv(name, value)  # the cluster's processes inherit it
        cluster = Cluster(initialize_head=True, head_node_args={**node_args(), "include_dashboard": False})
        cluster.add_node(**node_args())
    try:
        yield str(cluster.address)
    finally:
        cluster.shutdown()


def miniml(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m miniml ARGS`` in a subprocess: exit code, stdout, stderr."""
    import os

    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "miniml", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr


REPLICA_ROW = re.compile(r"replica (\S+): (\w+) on \S+ \(pid (\d+)\)")  # `miniml serve status`


def predict_counts(url: str, replicas: int = 2, timeout: float = 30) -> dict[str, float]:
    """Predict requests each replica has answered (``miniml_requests_total`` by its ``replica`` label),
    scraping ``/metrics`` through the proxy until every replica has answered a scrape."""
    counts: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(counts) < replicas:
        assert time.monotonic() < deadline, f"only replicas {sorted(counts)} answered /metrics"
        response = httpx.get(f"{url}/metrics", timeout=10)
        if response.status_code != 200:  # e.g. routed to a replica that just died
            continue
        text = response.text
        found = re.search(r'replica="([^"]+)"', text)
        assert found, text[:500]
        counts[found[1]] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("miniml_requests_total{") and 'route="/v1/models/{name}/predict"' in line
        )
    return counts


class Load:
    """Closed-loop clients posting until stopped; records (status, version) of every answer."""

    def __init__(
        self, url: str, clients: int, headers: dict[str, str], body: Callable[[int, int], dict]
    ) -> None:
        self.url, self.headers, self.body = url, headers, body
        self.results: list[tuple[int, object]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(clients)]

    def client(self, i: int) -> None:
        with httpx.Client(timeout=30, headers=self.headers) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = http.post(self.url, json=self.body(i, n))
                    version = r.json().get("version") if r.status_code == 200 else r.text[:200]
                    self.results.append((r.status_code, version))
                except httpx.HTTPError as err:  # a connection the proxy dropped counts as a failure
                    self.results.append((0, repr(err)))

    def failures(self) -> list[tuple[int, object]]:
        return [r for r in self.results if r[0] != 200]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def sentence(i: int, n: int) -> dict:
    return {"inputs": [f"jag bor i stockholm {i} {n}", "eg veit ikkje kva eg skal seie"]}


def write_keys(folder: Path) -> dict[str, str]:
    """A keys file with: admin (no budget), other (another model only), metered (10 requests/minute)."""
    from miniml.serve.auth import add_key

    keys_file = folder / "keys.yaml"
    return {
        "admin": add_key(keys_file, "admin"),
        "other": add_key(keys_file, "other", models=["someone-else"]),
        "metered": add_key(keys_file, "metered", requests="10/minute"),
    }

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
from prometheus_client.parser import text_string_to_metric_families

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


def server_replicas(status_out: str) -> list[tuple[str, str, str]]:
    """(id, state, pid) of the ``MinimlServer`` replicas in ``miniml serve status`` (not the board's)."""
    block = status_out.split("deployment MinimlServer:", 1)[1].split("\n  deployment ", 1)[0]
    return REPLICA_ROW.findall(block)


def replica_counts(text: str) -> dict[str, float]:
    """Predict requests by ``replica`` label in one exposition (0 for a replica that answered none); it must
    parse, with each family once."""
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    counts: dict[str, float] = {}
    for family in families:
        for s in family.samples:
            if "replica" in s.labels:
                counts.setdefault(s.labels["replica"], 0.0)
            if s.name == "miniml_requests_total" and s.labels.get("route") == "/v1/models/{name}/predict":
                counts[s.labels["replica"]] += s.value
    return counts


def predict_counts(url: str, replicas: int = 2, timeout: float = 30) -> dict[str, float]:
    """Predict requests each replica has answered (``miniml_requests_total`` by its ``replica`` label), from
    one scrape of ``/metrics`` through the proxy (the answering replica returns every live replica's series),
    retried until it holds ``replicas`` replicas (one that just started reports within a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/metrics", timeout=10)
        counts = replica_counts(response.text) if response.status_code == 200 else {}
        if len(counts) == replicas:
            return counts
        assert time.monotonic() < deadline, f"/metrics shows replicas {sorted(counts)}"
        time.sleep(0.2)


def settled_counts(url: str, replicas: int = 2, timeout: float = 60) -> dict[str, float]:
    """:func:`predict_counts` once every replica has reported since its last request (without traffic: two
    scrapes more than a report period apart agree; the other replicas' series are as of their last report)."""
    from miniml.backends.ray.board import REPORT_PERIOD_S

    deadline = time.monotonic() + timeout
    last = predict_counts(url, replicas)
    while True:
        time.sleep(REPORT_PERIOD_S + 1)
        now = predict_counts(url, replicas)
        if now == last:
            return now
        assert time.monotonic() < deadline, f"predict counts still moving: {last} -> {now}"
        last = now


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

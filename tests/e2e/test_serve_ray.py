"""``miniml serve --backend ray`` on a local two-node Ray cluster (one CPU per node), 2 replicas of a tiny
model sharing a real redis-server: the same answers and errors as the local server, a rate limit that holds
across replicas, an alias move under load without a failed request, a killed replica replaced while
requests keep succeeding, one /metrics scrape with both replicas' series and a /readyz that counts them,
one error line for more replicas than CPUs, a clean stop on SIGTERM, and autoscaling from 1 to 2 replicas
under load and back to 1 after it.

One cluster, one Redis and one deployment serve the whole module (the tests run in file order); the local
server it is compared with runs from the same serve.yaml.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from ray_serve_support import (
    Load,
    miniml,
    predict_counts,
    replica_counts,
    sentence,
    server_replicas,
    settled_counts,
    two_node_cluster,
    write_keys,
)

from serve_support import ServerProcess, redis_server, train_toy_model, wait_until, write_yaml

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.services

TEXTS = [
    "jag heter anna och bor i stockholm",
    "hej med dig hvordan går det",
    "eg veit ikkje kva eg skal seie",
]


@dataclass
class Served:
    ray: ServerProcess
    local: ServerProcess
    address: str
    keys: dict[str, str]
    env: dict[str, str]
    home: Path
    redis_url: str
    tmp: Path

    def post(self, server: ServerProcess, key: str | None, body: object, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{server.url}/v1/models/toy/predict", json=body, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def served(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from miniml.registry.store import register_model, set_alias

    tmp = tmp_path_factory.mktemp("ray_serve")
    home = tmp / "home"
    env = {"MINIML_HOME": str(home), "MLFLOW_TRACKING_URI": "", "HF_HUB_OFFLINE": "1"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIML_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", "")
        two = train_toy_model(tmp / "home2", ("da", "sv"), seed=2)
        assert register_model("toy", toy_model).version == 1 and register_model("toy", two).version == 2
        set_alias("toy", 1, "champion")
    keys = write_keys(tmp)
    with redis_server(tmp) as url, two_node_cluster() as address:
        config = write_yaml(
            tmp / "serve.yaml",
            {
                "models": ["models:/toy@champion"],
                "alias_poll_s": 0.3,
                "auth": {"keys_file": "keys.yaml"},
                "limits": {"max_body_bytes": 4000, "max_inputs": 4, "max_chars": 200},
                "cache": {"backend": "redis", "url": url, "prefix": "ray-e2e"},
                "ratelimit": {"storage": url},
                "backend": {"address": address, "replicas": 2},
            },
        )
        local = ServerProcess(["--config", str(config)], tmp, env=env)
        ray = ServerProcess(["--config", str(config), "--backend", "ray"], tmp, env=env)
        local.wait_ready()
        ray.wait_ready(timeout=300)  # the first replica answers; then every replica is up:
        wait_until(lambda: "Ctrl-C stops it" in ray.log(), 300, "the Serve application")
        served = Served(ray, local, address, keys, env, home, url, tmp)
        yield served
        for server in (served.ray, served.local):
            if server.proc.poll() is None:
                server.terminate(timeout=60)


def test_answers_and_errors_equal_the_local_server(served: Served) -> None:
    admin = served.keys["admin"]
    for text in TEXTS:
        body = {"inputs": [text], "top_k": 3}
        here, there = served.post(served.local, admin, body), served.post(served.ray, admin, body)
        assert there.status_code == here.status_code == 200
        assert there.json() == here.json()  # same version, labels and scores (the shared cache or not)

    cases = {
        401: (None, {"inputs": ["hej"]}),
        403: (served.keys["other"], {"inputs": ["hej"]}),
        413: (admin, {"inputs": ["x" * 5000]}),
        422: (admin, {"inputs": []}),
    }
    for status, (key, body) in cases.items():
        here, there = served.post(served.local, key, body), served.post(served.ray, key, body)
        assert (here.status_code, there.status_code) == (status, status), there.text
        assert there.json()["error"]["code"] == here.json()["error"]["code"]
        assert there.json()["error"]["message"] == here.json()["error"]["message"]
    openapi = httpx.get(f"{served.ray.url}/openapi.json").json()
    assert openapi["paths"].keys() == httpx.get(f"{served.local.url}/openapi.json").json()["paths"].keys()


def test_a_rate_limit_holds_across_replicas(served: Served) -> None:
    before = settled_counts(served.ray.url)  # the earlier tests' requests reported by every replica
    statuses = [
        served.post(served.ray, served.keys["metered"], {"inputs": [t]}).status_code for t in TEXTS * 4
    ]
    assert statuses == [200] * 10 + [429] * 2  # 10/minute over both replicas together

    def taken() -> dict[str, float]:
        after = predict_counts(served.ray.url)
        return {replica: after[replica] - before[replica] for replica in after}

    # the other replica's series are as of its last report (every 5 s)
    wait_until(lambda: sum(taken().values()) == 12, 30, "12 predict requests in one scrape")
    assert all(n > 0 for n in taken().values()), taken()  # both answered some


def test_one_scrape_shows_every_replica_and_readyz_counts_them(served: Served) -> None:
    code, out, err = miniml("serve", "status", "--set", f"backend.address={served.address}", env=served.env)
    assert code == 0, err
    ids = {replica for replica, _, _ in server_replicas(out)}
    assert len(ids) == 2 and "deployment MinimlBoard: HEALTHY, replicas: 1 RUNNING" in out, out
    wait_until(lambda: set(predict_counts(served.ray.url)) == ids, 30, "both replicas in one scrape")
    for _ in range(4):  # whichever replica the proxy picks answers for both
        response = httpx.get(f"{served.ray.url}/metrics", timeout=10)
        assert response.status_code == 200
        assert set(replica_counts(response.text)) == ids  # parses, each family once, both replica ids
        assert response.text.count("# TYPE miniml_requests_total counter") == 1
        ready = httpx.get(f"{served.ray.url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["replicas"] == dict.fromkeys(sorted(ids), "ready"), ready.json()
        assert ready.json()["ready_replicas"] == 2


def test_alias_move_under_load_has_no_failed_request(served: Served) -> None:
    from miniml.registry.store import set_alias

    url = f"{served.ray.url}/v1/models/toy/predict"
    headers = {"Authorization": f"Bearer {served.keys['admin']}"}
    with Load(url, 4, headers, sentence) as load:
        time.sleep(1.0)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MINIML_HOME", str(served.home))
            set_alias("toy", 2, "champion")
        wait_until(lambda: all(v == 2 for _, v in load.results[-30:]), 60, "version 2 on every replica")
        time.sleep(1.0)
    versions = [v for _, v in load.results]
    assert load.failures() == [], load.failures()[:5]
    assert set(versions) == {1, 2} and len(versions) > 30


def test_a_killed_replica_is_replaced_while_requests_succeed(served: Served) -> None:
    code, out, err = miniml("serve", "status", "--set", f"backend.address={served.address}", env=served.env)
    assert code == 0, err
    assert "application miniml: RUNNING" in out
    assert "deployment MinimlServer: HEALTHY, replicas: 2 RUNNING" in out
    rows = server_replicas(out)
    assert [state for _, state, _ in rows] == ["RUNNING", "RUNNING"], out
    killed, pid = rows[0][0], int(rows[0][2])

    url = f"{served.ray.url}/v1/models/toy/predict"
    headers = {"Authorization": f"Bearer {served.keys['admin']}"}
    with Load(url, 4, headers, sentence) as load:
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        killed_at = len(load.results)
        wait_until(lambda: killed not in predict_counts(served.ray.url, timeout=5), 120, "a new replica")
        recovered_at = len(load.results)
        time.sleep(2.0)
    failures = load.failures()
    print(
        f"\nkilled replica {killed}: {len(failures)} failed of {len(load.results)} requests "
        f"({recovered_at - killed_at} sent while it was replaced): {failures[:3]}"
    )
    assert len(load.results) > recovered_at + 10
    assert all(status == 200 for status, _ in load.results[recovered_at + 4 :])  # after: none fail
    assert len(failures) <= 4  # at most the requests in flight on the killed replica


def test_more_replicas_than_the_cluster_holds_is_one_line(served: Served) -> None:
    code, _, err = miniml(
        "serve", "models:/toy@champion", "--backend", "ray", "--set", f"backend.address={served.address}",
        "--set", "backend.replicas=3", "--set", "backend.app_name=toomany", env=served.env,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "3 replica(s) × backend.cpus_per_replica=1 need 3 CPUs" in err and "has 2" in err


def test_sigterm_stops_the_application_then_autoscaling_follows_the_load(served: Served) -> None:
    assert served.ray.terminate(timeout=60) == 0
    log = served.ray.log_path.read_text(errors="replace")
    assert "stopped the Serve application 'miniml'" in log, log[-3000:]

    scaling = {
        "replicas": "auto",
        "autoscaling.min_replicas": 1,
        "autoscaling.max_replicas": 2,
        "autoscaling.target_ongoing_requests": 1,
        "autoscaling.upscale_delay_s": 0.5,
        "autoscaling.downscale_delay_s": 1,
        "autoscaling.look_back_period_s": 2,
        "autoscaling.metrics_interval_s": 0.5,  # Ray's 10 s would leave the controller one report a window
        "app_name": "auto",
    }
    auto = [arg for key, value in scaling.items() for arg in ("--set", f"backend.{key}={value}")]
    config = str(served.tmp / "serve.yaml")
    args = ["--config", config, "--backend", "ray", *auto]
    elsewhere = ServerProcess(args, served.tmp, env=served.env)  # Serve keeps the port it started on
    assert elsewhere.proc.wait(120) == 2
    assert f"error: Ray Serve on this cluster listens on 127.0.0.1:{served.ray.port}, not" in elsewhere.log()
    server = ServerProcess(args, served.tmp, env=served.env, port=served.ray.port)
    try:
        server.wait_ready(timeout=180)
        wait_until(lambda: "Ctrl-C stops it" in server.log(), 120, "the autoscaling application")
        status = Status(served)
        # polled: the readiness probes can be load enough for a second replica for a moment
        status.wait_for(1, "one replica without load")
        url = f"{server.url}/v1/models/toy/predict"
        headers = {"Authorization": f"Bearer {served.keys['admin']}"}
        with Load(url, 6, headers, sentence) as load:
            status.wait_for(2, "a second replica under load")
        assert load.failures() == [], load.failures()[:3]
        assert len(load.results) > 12, load.results  # the load was a load
        status.wait_for(1, "back to one replica without load")
    finally:
        assert server.terminate(timeout=60) == 0


class Status:
    """Polls ``miniml serve status`` until ``MinimlServer`` has exactly ``n`` replicas, all running; a
    timeout shows the last status printed (on a loaded CI machine one call can take seconds)."""

    def __init__(self, served: Served) -> None:
        self.served, self.last = served, ""

    def running(self, n: int) -> bool:
        address = f"backend.address={self.served.address}"
        code, out, err = miniml("serve", "status", "--set", address, env=self.served.env)
        self.last = out + err
        server = f"deployment MinimlServer: HEALTHY, replicas: {n} RUNNING"
        return code == 0 and server in out and "STARTING" not in out and "STOPPING" not in out

    def wait_for(self, n: int, what: str, timeout: float = 240) -> None:
        try:
            wait_until(lambda: self.running(n), timeout, what)
        except TimeoutError as err:
            raise TimeoutError(f"{err}; the last serve status:\n{self.last}") from None

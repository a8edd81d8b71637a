"""Two replicas sharing a real redis-server: the response cache and the rate-limit budgets are shared."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis

from miniml.serve.auth import add_key
from serve_support import ServerProcess, redis_server, write_yaml


def metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_replicas_share_cache_and_rate_limits_through_redis(toy_model: Path, tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        key = add_key(tmp_path / "keys.yaml", "ci", requests="4/minute")
        config = write_yaml(
            tmp_path / "serve.yaml",
            {
                "models": [str(toy_model)],
                "auth": {"keys_file": "keys.yaml"},
                "cache": {"backend": "redis", "url": url, "prefix": "e2e"},
                "ratelimit": {"storage": url},
            },
        )
        one = ServerProcess(["--config", str(config)], tmp_path)
        two = ServerProcess(["--config", str(config)], tmp_path)
        one.wait_ready()
        two.wait_ready()
        headers = {"Authorization": f"Bearer {key}"}
        body = {"inputs": ["jag heter anna och bor i stockholm"], "top_k": 3}

        first = httpx.post(f"{one.url}/v1/models/toy/predict", json=body, headers=headers)
        assert first.status_code == 200
        client = redis.Redis.from_url(url)
        cached = client.keys("e2e:toy@*")
        assert len(cached) == 1 and len(client.get(cached[0]) or b"") == 3 * 4  # 3 float32 probabilities
        assert 0 < client.pttl(cached[0]) <= 3600 * 1000

        second = httpx.post(f"{two.url}/v1/models/toy/predict", json=body, headers=headers)
        assert second.json()["predictions"] == first.json()["predictions"]
        assert metric(two, "miniml_cache_hits_total") == 1  # computed by replica one, answered by two
        assert metric(two, "miniml_cache_misses_total") == 0

        statuses = [
            httpx.post(f"{s.url}/v1/models/toy/predict", json=body, headers=headers).status_code
            for s in (one, two, one)
        ]
        assert statuses == [200, 200, 429]  # 4 per minute across both replicas
        assert client.keys("LIMITS*")
        client.close()
        assert one.terminate() == 0 and two.terminate() == 0

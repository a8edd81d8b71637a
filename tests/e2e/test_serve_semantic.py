"""The semantic cache across two replicas sharing a real redis-server: a paraphrase asked at replica two is
answered with replica one's answer; the guard refuses a prompt naming another value; opting out, other
settings and a Redis that went away."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis

import tiny_generative as tg
from embedding_support import make_embedding_folder, make_tiny_encoder
from miniml.serve.auth import add_key
from serve_support import ServerProcess, redis_server, wait_until, write_yaml

MODEL = "tiny-gpt2"


def metric(server: ServerProcess, line_start: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def ask(server: ServerProcess, key: str, prompt: str, **extra: object) -> httpx.Response:
    body = {"inputs": [prompt], "max_new_tokens": 4, "temperature": 0, **extra}
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}/generate",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r


def test_an_embedder_must_be_an_embedding_model(toy_model: Path) -> None:
    from miniml.errors import ConfigError
    from miniml.serve.semantic import load_embedder
    from miniml.serve.settings import SemanticCacheSettings

    with pytest.raises(ConfigError, match="is a classification model, not an embedding model"):
        load_embedder(SemanticCacheSettings(embedder=str(toy_model)))


def test_replicas_share_semantic_answers_through_redis(tmp_path: Path) -> None:
    # the tiny encoder lower-cases and reads unknown words (numbers) as [UNK]: "who is Ross" / "who is ross"
    # embed identically, and so do "how many kerr 1998" / "... 1999": only the guard tells those apart
    embedder = make_embedding_folder(tmp_path / "emb", make_tiny_encoder(tmp_path / "encoder"))
    with redis_server(tmp_path) as url:
        key = add_key(tmp_path / "keys.yaml", "ci")
        semantic = {"embedder": str(embedder), "threshold": 0.99, "url": url, "prefix": "e2e", "sync_s": 0.2}
        config = write_yaml(
            tmp_path / "serve.yaml",
            {
                "models": [str(tg.trained_folder("gpt2"))],
                "auth": {"keys_file": "keys.yaml"},
                "cache": {"backend": "memory", "semantic": semantic},
                "batching": {"threads": 1},
            },
        )
        one = ServerProcess(["--config", str(config)], tmp_path)
        two = ServerProcess(["--config", str(config)], tmp_path)
        one.wait_ready(timeout=180)
        two.wait_ready(timeout=180)

        first = ask(one, key, "who is Ross")
        assert "x-miniml-cache" not in first.headers  # computed
        ask(one, key, "how many kerr 1998")
        client = redis.Redis.from_url(url)
        assert client.zcard("e2e:log") == 2
        entry = client.keys("e2e:e:*")[0]
        assert 0 < client.pttl(entry) <= 3600 * 1000
        assert set(client.hgetall(entry)) == {b"scope", b"text", b"vector", b"answer"}
        time.sleep(0.6)  # replica two pulls every 0.2 s

        para = ask(two, key, "who is ross")  # never seen by replica two: answered from replica one's entry
        assert para.headers["x-miniml-cache"] == "semantic"
        assert float(para.headers["x-miniml-cache-similarity"]) > 0.99
        assert para.json()["generations"] == first.json()["generations"]
        assert metric(two, f'miniml_cache_hits_total{{kind="semantic",model="{MODEL}"}}') == 1

        other = ask(two, key, "how many kerr 1999")  # same embedding, another value: the guard says no
        assert "x-miniml-cache" not in other.headers
        assert metric(two, f'miniml_semantic_guarded_total{{model="{MODEL}"}}') == 1
        assert "x-miniml-cache" not in ask(two, key, "who is ROSS", cache=False).headers  # opted out
        shorter = ask(two, key, "who is ross", max_new_tokens=3)
        assert "x-miniml-cache" not in shorter.headers  # other settings: another scope
        assert ask(one, key, "who is Ross").headers["x-miniml-cache"] == "exact"
        assert metric(two, f'miniml_semantic_lookup_duration_seconds_count{{model="{MODEL}"}}') >= 3
        client.close()

    # Redis is gone: requests still succeed, each replica answers from what it holds
    assert ask(two, key, "who is kerr").status_code == 200
    assert ask(two, key, "Who is Ross").headers["x-miniml-cache"] == "semantic"
    wait_until(lambda: "redis unavailable for the semantic cache" in two.log(), 10, "a warning in the log")
    assert one.terminate() == 0 and two.terminate() == 0

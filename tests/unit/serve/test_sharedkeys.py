"""Publishing and reading the shared keys against a real redis-server; the watcher applies a new version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis

from miniml.serve.auth import hash_key
from miniml.serve.settings import ApiKeyRecord
from miniml.serve.sharedkeys import SharedKeysWatcher, publish_keys, read_shared_keys, redact
from serve_support import redis_server


def record(name: str) -> ApiKeyRecord:
    return ApiKeyRecord(name=name, sha256=hash_key("mk_" + name), requests="5/second")


def test_publish_replaces_the_whole_set_and_bumps_the_version(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        assert read_shared_keys(url, prefix="t") == (0, [])
        assert publish_keys(url, [record("b"), record("a")], prefix="t") == 1
        assert read_shared_keys(url, prefix="t") == (1, [record("a"), record("b")])
        assert publish_keys(url, [record("b")], prefix="t") == 2
        assert read_shared_keys(url, prefix="t") == (2, [record("b")])
        assert publish_keys(url, [], prefix="t") == 3
        assert read_shared_keys(url, prefix="t") == (3, [])
        stored = redis.Redis.from_url(url).hgetall("t")
        assert stored == {}


def test_watcher_applies_a_new_version_and_ignores_an_unchanged_one(tmp_path: Path) -> None:
    seen: list[list[ApiKeyRecord]] = []

    async def scenario(url: str) -> None:
        import redis.asyncio

        version, _ = read_shared_keys(url, prefix="w")
        watcher = SharedKeysWatcher(url, "w", 3600, version, seen.append)
        watcher._client = redis.asyncio.Redis.from_url(url)
        assert await watcher.check() is False
        publish_keys(url, [record("a")], prefix="w")
        assert await watcher.check() is True
        assert await watcher.check() is False
        assert await watcher.check(force=True) is True
        await watcher._client.aclose()

    with redis_server(tmp_path) as url:
        asyncio.run(scenario(url))
    assert seen == [[record("a")], [record("a")]]


def test_redact_hides_the_password() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://***@host:6379/0"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"

"""Keys shared through a real redis-server: two replicas with no common keys file follow
`miniml keys ... --redis`, a revoke is refused by both within seconds, and Redis trouble never opens a
server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serve_support import (
    REPO,
    ServerProcess,
    redis_server,
    seconds_until,
    status,
    wait_until,
    write_yaml,
)


def keys_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miniml", "keys", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        check=check,
    )


def replica(tmp: Path, name: str, model: Path, url: str) -> ServerProcess:
    folder = tmp / name  # its own folder: the replicas share no file
    folder.mkdir()
    config = write_yaml(folder / "serve.yaml", {"models": [str(model)], "auth": {"keys_redis": url}})
    return ServerProcess(["--config", str(config)], folder)


def test_replicas_follow_keys_published_to_redis(toy_model: Path, tmp_path: Path) -> None:
    keys_file = tmp_path / "admin" / "keys.yaml"
    keys_file.parent.mkdir()
    with redis_server(tmp_path) as url:
        alice = keys_cli("create", "alice", "--file", str(keys_file), "--redis", url).stdout.strip()
        bob = keys_cli("create", "bob", "--file", str(keys_file), "--redis", url).stdout.strip()
        one, two = replica(tmp_path, "one", toy_model, url), replica(tmp_path, "two", toy_model, url)
        try:
            one.wait_ready()
            two.wait_ready()
            assert [status(s, k) for s in (one, two) for k in (alice, bob)] == [200] * 4
            assert status(one, "mk_not-a-key") == 401

            revoked = keys_cli("revoke", "alice", "--file", str(keys_file), "--redis", url)
            assert "published 1 key(s)" in revoked.stderr and "auth.keys_redis" in revoked.stderr
            for server in (one, two):
                assert seconds_until(server, alice, 401, limit=5) < 5
                assert status(server, bob) == 200

            carol = keys_cli("create", "carol", "--file", str(keys_file)).stdout.strip()  # file only
            assert status(one, carol) == 401
            keys_cli("publish", "--file", str(keys_file), "--redis", url)  # now shared
            seconds_until(two, carol, 200, limit=5)
            assert url not in one.log() and carol not in one.log()
        finally:
            assert one.terminate() == 0 and two.terminate() == 0


def test_redis_down_keeps_the_last_keys_and_a_server_without_redis_does_not_start(
    toy_model: Path, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.yaml"
    with redis_server(tmp_path) as url:
        alice = keys_cli("create", "alice", "--file", str(keys_file), "--redis", url).stdout.strip()
        server = replica(tmp_path, "one", toy_model, url)
        server.wait_ready()
    try:  # redis-server is stopped now: the server keeps alice, refuses others, logs the trouble once
        wait_until(lambda: "shared API keys not reloaded" in server.log(), 15, "the watcher to notice")
        server.proc.send_signal(signal.SIGHUP)  # a forced re-read fails the same way
        time.sleep(3)  # a few more polls (auth.reload_s is 2 s)
        assert status(server, alice) == 200
        assert status(server, "mk_not-a-key") == 401
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert server.log().count("shared API keys not reloaded") == 1
    finally:
        assert server.terminate() == 0

    refused = replica(tmp_path, "two", toy_model, url)
    assert refused.proc.wait(timeout=60) == 2
    last = refused.log().strip().splitlines()[-1]
    assert last.startswith("error: cannot reach Redis at") and "auth.keys_redis" in last

    bad = keys_cli("publish", "--file", str(keys_file), "--redis", "http://x", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --redis must be a redis://")

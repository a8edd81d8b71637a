"""Keys follow the keys file on a running server: revoke → 401, create → 200, within seconds; SIGHUP."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from serve_support import REPO, ServerProcess, seconds_until, status, wait_until, write_yaml


def keys_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miniml", "keys", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        check=True,
    )


def test_revoked_key_is_refused_within_seconds_and_new_keys_work(toy_model: Path, tmp_path: Path) -> None:
    from miniml.serve.auth import add_key

    keys_file = tmp_path / "keys.yaml"
    alice = add_key(keys_file, "alice")
    bob = add_key(keys_file, "bob")
    config = write_yaml(
        tmp_path / "serve.yaml", {"models": [str(toy_model)], "auth": {"keys_file": "keys.yaml"}}
    )
    server = ServerProcess(["--config", str(config)], tmp_path).wait_ready()
    try:
        assert status(server, alice) == 200 and status(server, bob) == 200
        revoked = keys_cli("revoke", "alice", "--file", str(keys_file))  # the real command, real file
        assert "within auth.reload_s" in revoked.stderr
        assert seconds_until(server, alice, 401, limit=5) < 5
        assert status(server, bob) == 200  # the others keep working
        carol = keys_cli("create", "carol", "--file", str(keys_file)).stdout.strip()
        seconds_until(server, carol, 200, limit=5)
        keys_cli("revoke", "bob", "--file", str(keys_file))
        keys_cli("revoke", "carol", "--file", str(keys_file))  # the last key: auth stays on, all 401
        seconds_until(server, carol, 401, limit=5)
        assert status(server, bob) == 401
        assert '"API keys reloaded"' in server.log() or "API keys reloaded" in server.log()
    finally:
        assert server.terminate() == 0


def test_sighup_reloads_at_once_and_a_broken_file_keeps_the_keys(toy_model: Path, tmp_path: Path) -> None:
    from miniml.serve.auth import add_key, revoke_key

    keys_file = tmp_path / "keys.yaml"
    alice = add_key(keys_file, "alice")
    dave = add_key(keys_file, "dave")
    config = write_yaml(
        tmp_path / "serve.yaml",
        {"models": [str(toy_model)], "auth": {"keys_file": str(keys_file), "reload_s": 3600}},
    )
    server = ServerProcess(["--config", str(config)], tmp_path).wait_ready()
    try:
        good = keys_file.read_text()
        keys_file.write_text(good + "  - name: [broken\n")  # a hand edit gone wrong
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "keys file not reloaded" in server.log(), 10, "the reload error")
        assert server.proc.poll() is None  # SIGHUP does not kill the server
        assert status(server, alice) == 200  # the previous keys stay in force
        assert "line 12, column 1" in server.log()
        keys_file.write_text(good)
        revoke_key(keys_file, "dave")
        server.proc.send_signal(signal.SIGHUP)  # reload_s is an hour: only the signal can do it
        assert seconds_until(server, dave, 401, limit=5) < 5
        assert status(server, alice) == 200
    finally:
        assert server.terminate() == 0

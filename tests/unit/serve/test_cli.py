"""`miniml keys` and `miniml serve` on the command line: keys shown once, clear one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from miniml.cli import main
from miniml.serve.auth import hash_key, read_keys_file

REPO = Path(__file__).resolve().parents[3]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_keys_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "keys.yaml"
    code, out, _ = run_cli(
        capsys, "keys", "create", "alice", "--file", str(file), "-m", "langid", "--requests", "10/second",
        "--tokens", "100000/minute",
    )  # fmt: skip
    key = out.strip()
    assert code == 0 and key.startswith("mk_")
    assert key not in file.read_text() and read_keys_file(file)[0].sha256 == hash_key(key)
    code, out, _ = run_cli(capsys, "keys", "list", "--file", str(file))
    assert code == 0 and "alice" in out and "models=langid" in out and "requests=10/second" in out
    assert "tokens=100000/minute" in out
    assert key not in out
    code, _, err = run_cli(capsys, "keys", "create", "alice", "--file", str(file))
    assert code == 2 and err.startswith("error: a key named 'alice' already exists")
    code, out, _ = run_cli(capsys, "keys", "revoke", "alice", "--file", str(file))
    assert code == 0 and read_keys_file(file) == []


def serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "miniml", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_serve_refuses_a_missing_model_and_a_taken_port(tmp_path: Path) -> None:
    from serve_support import free_port

    missing = serve_cli(str(tmp_path / "nope"), "--port", str(free_port()))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error: no model folder or model URI")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = serve_cli(str(tmp_path), "--port", str(port))
    assert busy.returncode == 2 and f"error: port {port} on 127.0.0.1 is already in use" in busy.stderr
    bad = serve_cli(str(tmp_path), "--set", "batching.max_batch_size=0")
    assert bad.returncode == 2 and "max_batch_size" in bad.stderr

"""The connection layer over raw sockets: huge and slow headers, partial bodies, idle connections, the cap."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_support import ServerProcess, wait_until, write_yaml

TIMEOUT_S = 1.0
CAP = 6
REQUEST = b"POST /v1/models/toy/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def server(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("connections")
    config = write_yaml(
        tmp / "serve.yaml",
        {
            "models": [str(toy_model)],
            "server": {
                "header_timeout_s": TIMEOUT_S,
                "body_timeout_s": TIMEOUT_S,
                "limit_concurrency": CAP,
                "max_header_bytes": 8192,
            },
        },
    )
    server = ServerProcess(["--config", str(config)], tmp).wait_ready()
    yield server
    assert server.terminate() == 0


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Read until the server closes: status, headers, JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_huge_header_is_431_after_a_bounded_read(server: ServerProcess) -> None:
    before = rss_kb(server.proc.pid)
    socks = [connect(server) for _ in range(4)]  # what doubled the server's memory before
    sent = [0] * len(socks)
    chunk = b"x" * 65536
    for i, sock in enumerate(socks):
        sock.sendall(REQUEST + b"X-Big: ")
        try:
            while sent[i] < 100 * 1024 * 1024:  # an unfinished 100 MB header
                sock.sendall(chunk)
                sent[i] += len(chunk)
        except OSError:  # the server closed the connection: the rest is never read
            pass
    for sock, amount in zip(socks, sent, strict=True):
        status, headers, body = read_response(sock)
        assert status == 431 and body["error"]["code"] == "headers_too_large", body
        assert headers["connection"] == "close" and headers["content-type"] == "application/json"
        assert amount > 0  # what followed the limit was read and dropped (a lingering close), never kept
        sock.close()
    assert rss_kb(server.proc.pid) - before < 20_000  # kB: not +500 MB as before


def test_too_many_header_fields_and_malformed_requests_are_json(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(REQUEST + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n")
        status, _, body = read_response(sock)
    assert status == 431 and body["error"]["code"] == "too_many_headers"
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 400 and body["error"]["code"] == "bad_request"


def test_slow_headers_get_408_and_idle_connections_are_closed(server: ServerProcess) -> None:
    with connect(server) as slow, connect(server) as idle:
        start = time.monotonic()
        slow.sendall(b"POST /v1/models/toy/pre")  # slowloris: a few bytes, then nothing
        status, _, body = read_response(slow)
        assert status == 408 and body["error"]["code"] == "headers_timeout"
        assert idle.recv(1) == b""  # a connection that never sent a byte is closed, silently
        assert time.monotonic() - start < TIMEOUT_S + 8  # bounded (slack for a loaded CI)


def test_partial_body_gets_408_within_the_body_timeout(server: ServerProcess) -> None:
    with connect(server) as sock:
        start = time.monotonic()
        sock.sendall(REQUEST + b"Content-Length: 100\r\n\r\n" + b'{"inputs": ["he')
        status, _, body = read_response(sock)
        assert status == 408 and body["error"]["code"] == "body_timeout"
        assert time.monotonic() - start < TIMEOUT_S + 8  # bounded (slack for a loaded CI)
    wait_until(lambda: '"status":408' in server.log(), 5, "the 408 access line")


def test_connections_beyond_the_cap_get_a_fast_json_503(server: ServerProcess) -> None:
    held = [connect(server) for _ in range(CAP)]
    for sock in held:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # unfinished: each holds a connection
    time.sleep(0.2)
    with connect(server) as extra:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = read_response(extra)
    assert status == 503 and headers["retry-after"] == "1" and body["error"]["code"] == "over_capacity"
    for sock in held:
        sock.close()
    wait_until(lambda: httpx.get(f"{server.url}/healthz").status_code == 200, 10, "capacity back")
    r = httpx.post(f"{server.url}/v1/models/toy/predict", json={"inputs": ["jag bor i stockholm"]})
    assert r.status_code == 200


def test_connection_metrics(server: ServerProcess) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    assert "miniml_open_connections " in text
    if os.uname().sysname == "Linux":
        assert "miniml_listen_queue_depth 0.0" in text and "miniml_listen_queue_limit " in text
    for reason in (
        "headers_too_large",
        "too_many_headers",
        "headers_timeout",
        "body_timeout",
        "over_capacity",
    ):
        assert f'miniml_refused_connections_total{{reason="{reason}"}}' in text, reason


def test_a_drain_that_outlasts_the_grace_period_answers_json_503(toy_model: Path, tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "serve.yaml",
        {"models": [str(toy_model)], "server": {"graceful_timeout_s": 1, "body_timeout_s": 60}},
    )
    server = ServerProcess(["--config", str(config)], tmp_path).wait_ready()
    with connect(server) as sock:
        sock.sendall(REQUEST + b"Content-Length: 100\r\n\r\n" + b'{"inputs": ["he')  # in flight, stuck
        time.sleep(0.3)
        start = time.monotonic()
        server.proc.terminate()  # SIGTERM: drain, give up after graceful_timeout_s
        status, headers, body = read_response(sock)
    assert status == 503 and headers["retry-after"] == "1", body
    assert body["error"]["code"] == "unavailable" and body["error"]["request_id"]
    assert time.monotonic() - start < 10
    assert server.proc.wait(30) == 0
    log = server.log()
    assert '"status":503' in log and "Internal Server Error" not in log
    server.terminate()

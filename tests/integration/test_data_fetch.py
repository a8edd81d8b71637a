"""`miniml data fetch` against a real HTTP server on loopback serving a temp copy of the catalog mirror."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from miniml.data.catalog import dataset_files
from miniml.data.fetch import cached_path, fetch
from miniml.errors import DataError

REPO = Path(__file__).resolve().parents[2]


@dataclass
class MirrorServer:
    """Serves a folder with HTTP Range support; can cut responses mid-body to mimic a dropped connection."""

    root: Path
    url: str = ""
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (file name, Range header, status)
    cuts: dict[str, int] = field(default_factory=dict)  # file name → how many more responses to cut
    honor_range: bool = True


def make_handler(state: MirrorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            return

        def do_GET(self) -> None:
            path = (state.root / unquote(self.path.lstrip("/"))).resolve()
            name, wanted = path.name, self.headers.get("Range", "")
            if not path.is_relative_to(state.root) or not path.is_file():
                state.requests.append((name, wanted, 404))
                self.send_error(404)
                return
            data = path.read_bytes()
            start = int(wanted.removeprefix("bytes=").split("-")[0]) if wanted and state.honor_range else 0
            status = 206 if start else 200
            state.requests.append((name, wanted, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(data) - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            body = data[start:]
            if state.cuts.get(name, 0) > 0:  # send a third of the body, then drop the connection
                state.cuts[name] -= 1
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server(mirror_dir: Path, tmp_path: Path) -> Iterator[MirrorServer]:
    root = tmp_path / "mirror"
    for file in dataset_files("sst5"):  # a temp copy: tests corrupt and delete files in it
        rel = file.url.removeprefix("https://")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror_dir / rel, root / rel)
    state = MirrorServer(root.resolve())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def mirror_file(state: MirrorServer, name: str) -> Path:
    [file] = [f for f in dataset_files("sst5") if f.name == name]
    return state.root / file.url.removeprefix("https://")


def test_fetch_over_http_verifies_caches_and_skips(
    server: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINIML_DATA_MIRROR", server.url)  # read at call time
    paths = fetch("sst5")
    files = dataset_files("sst5")
    assert paths == [cached_path(f) for f in files]
    for path, file in zip(paths, files, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256
    assert [(n, s) for n, _, s in server.requests] == [(f.name, 200) for f in files]
    assert fetch("sst5") == paths
    assert len(server.requests) == 3  # cached: nothing downloaded again


def test_dropped_connection_resumes_with_range(server: MirrorServer) -> None:
    server.cuts["sst_train.txt"] = 2
    paths = fetch("sst5", mirror=server.url)
    train = [r for r in server.requests if r[0] == "sst_train.txt"]
    assert len(train) == 3 and train[0] == ("sst_train.txt", "", 200)
    assert train[1][1].startswith("bytes=") and train[1][2] == 206  # resumed where the first left off
    assert int(train[2][1].removeprefix("bytes=").rstrip("-")) > int(
        train[1][1].removeprefix("bytes=").rstrip("-")
    )
    assert hashlib.sha256(paths[0].read_bytes()).hexdigest() == dataset_files("sst5")[0].sha256


def test_dropped_connection_restarts_when_range_is_ignored(server: MirrorServer) -> None:
    server.honor_range = False
    server.cuts["sst_dev.txt"] = 1
    paths = fetch("sst5", mirror=server.url)
    dev = [r for r in server.requests if r[0] == "sst_dev.txt"]
    assert [s for _, _, s in dev] == [
        200,
        200,
    ]  # the server ignored Range: the file was fetched from the start
    assert hashlib.sha256(paths[1].read_bytes()).hexdigest() == dataset_files("sst5")[1].sha256


def test_interrupted_run_keeps_the_part_and_the_next_run_resumes(server: MirrorServer) -> None:
    server.cuts["sst_train.txt"] = 100
    with pytest.raises(DataError, match=r"interrupted 4 times .*run the same command again: it resumes"):
        fetch("sst5", mirror=server.url)
    train = dataset_files("sst5")[0]
    part = cached_path(train).with_name(train.sha256 + ".part")
    assert 0 < part.stat().st_size < train.bytes and not cached_path(train).exists()
    kept = part.stat().st_size
    server.cuts.clear()
    server.requests.clear()
    fetch("sst5", mirror=server.url)
    assert server.requests[0] == ("sst_train.txt", f"bytes={kept}-", 206)
    assert not part.exists() and hashlib.sha256(cached_path(train).read_bytes()).hexdigest() == train.sha256


def test_bad_leftover_part_is_discarded_and_fetched_again(server: MirrorServer) -> None:
    dev = dataset_files("sst5")[1]
    part = cached_path(dev).with_name(dev.sha256 + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"garbage from another file" * 100)
    paths = fetch("sst5", mirror=server.url)
    statuses = [(r, s) for n, r, s in server.requests if n == "sst_dev.txt"]
    assert statuses == [("bytes=2500-", 206), ("", 200)]  # resumed, failed the check, started over
    assert hashlib.sha256(paths[1].read_bytes()).hexdigest() == dev.sha256 and not part.exists()


def test_corrupted_file_is_an_error_and_not_kept(server: MirrorServer) -> None:
    target = mirror_file(server, "sst_dev.txt")
    data = bytearray(target.read_bytes())
    data[100] ^= 0x20
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"sst_dev.txt is corrupted: .*the bad copy was deleted"):
        fetch("sst5", mirror=server.url)
    dev = dataset_files("sst5")[1]
    assert not cached_path(dev).exists() and not cached_path(dev).with_name(dev.sha256 + ".part").exists()
    assert cached_path(dataset_files("sst5")[0]).exists()  # files before it stay cached


def test_missing_file_names_the_url_and_the_incomplete_mirror(server: MirrorServer) -> None:
    mirror_file(server, "sst_test.txt").unlink()
    with pytest.raises(
        DataError, match=r"http://127.0.0.1:\d+/.*/sst_test.txt was not found \(HTTP 404\).*incomplete"
    ):
        fetch("sst5", mirror=server.url)


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match=r"cannot connect to 127.0.0.1:\d+ .*is the mirror server running"):
        fetch("sst5", mirror=f"http://127.0.0.1:{port}")


def test_cli_fetch_reports_and_fails_in_one_line(
    server: MirrorServer, miniml_home: Path, mirror_dir: Path
) -> None:
    cmd = [sys.executable, "-m", "miniml", "data", "fetch", "sst5", "--mirror", server.url]
    env = {"PYTHONPATH": str(REPO / "src"), "MINIML_HOME": str(miniml_home), "PATH": "/usr/bin:/bin"}
    mirror_file(server, "sst_test.txt").unlink()
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: http://127.0.0.1")
    restored = mirror_file(server, "sst_test.txt")
    shutil.copyfile(mirror_dir / restored.relative_to(server.root), restored)
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "sst5: 3 files, 1.4 MB verified (1 fetched, 2 already cached)" in ok.stdout

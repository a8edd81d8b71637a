"""Helpers for serving tests: free ports, real redis-server / prometheus processes, a server subprocess.

Each service runs on loopback on a free port with its files in a temp dir, and is stopped by the test that
started it. A missing binary skips the test with the package to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install -y {package})")
    return path


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throwaway redis-server; yields its URL."""
    binary = need_binary("redis-server", "redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_until(up, 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def die_with_parent() -> None:
    """Linux: SIGTERM this child when the test process dies, so a killed pytest leaves no server behind."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class ServerProcess:
    """``python -m miniml serve ...`` in a subprocess on a free port; logs go to a file."""

    def __init__(
        self, args: Sequence[str], tmp: Path, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "miniml", "serve", *args, "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=tmp,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )

    def wait_ready(self, timeout: float = 90) -> ServerProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200

        try:
            wait_until(ready, timeout, "miniml serve")
        except RuntimeError as err:
            pytest.fail(str(err))
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        stop(self.proc, timeout)
        self._log.close()
        return int(self.proc.returncode)


def status(server: ServerProcess, key: str) -> int:
    r = httpx.post(
        f"{server.url}/v1/models/toy/predict",
        json={"inputs": ["jag bor i stockholm"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return r.status_code


def seconds_until(server: ServerProcess, key: str, wanted: int, limit: float) -> float:
    """Time until ``key`` is answered ``wanted`` (polling every 50 ms), failing after ``limit`` seconds."""
    start = time.monotonic()
    while (got := status(server, key)) != wanted:
        assert time.monotonic() - start < limit, f"still {got} after {limit}s; log: {server.log()[-1500:]}"
        time.sleep(0.05)
    return time.monotonic() - start


# ---------------------------------------------------------------- tiny trained models
SENTENCES = {
    "da": "hej med dig hvordan går det godt jeg er glad i dag hvad siger du",
    "sv": "jag heter anna och bor i stockholm det är bra idag vad säger du",
    "nn": "eg veit ikkje kva eg skal seie no men det er fint her",
}
WORDS = {label: words.split() for label, words in SENTENCES.items()}


def toy_frame(n: int, seed: int, labels: Sequence[str]) -> Any:
    import random

    import pandas as pd

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(labels))
        rows.append({"input": " ".join(rng.choices(WORDS[label], k=rng.randint(3, 9))), "target": label})
    return pd.DataFrame(rows)


def train_toy_model(home: Path, labels: Sequence[str], seed: int = 1) -> Path:
    """Train a hashing_bag classifier on a tiny generated dataset (seconds); returns its model folder."""
    from miniml.data.dataset import write_dataset
    from miniml.tasks.classification import ClassificationConfig
    from miniml.train import fit

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIML_HOME", str(home))
        splits = {
            split: toy_frame(n, seed + i, labels)
            for i, (split, n) in enumerate([("train", 240), ("validation", 40), ("test", 40)])
        }
        dataset = write_dataset("toy", f"serve-{'-'.join(labels)}-{seed}", splits)
        config = ClassificationConfig(
            model_name="toy",
            dataset=str(dataset.path),
            model={"kind": "hashing_bag", "buckets": 2048, "dim": 16},
            epochs=2,
            batch_size=16,
            learning_rate=0.05,
            early_stopping_patience=None,
            seed=seed,
        )
        return fit(config).model_folder


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained 3-language model folder (da, nn, sv), shared by the serving tests."""
    return train_toy_model(tmp_path_factory.mktemp("toy_home"), ("da", "sv", "nn"))


@pytest.fixture(scope="session")
def api_server(
    toy_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, dict]]:
    """A server with API keys (admin; other: another model only; metered: 3 requests/min; wordy: 60
    chars/min) and small limits, shared by the API and Prometheus tests."""
    from miniml.serve.auth import add_key

    tmp = tmp_path_factory.mktemp("api_server")
    keys_file = tmp / "keys.yaml"
    keys = {
        "admin": add_key(keys_file, "admin"),
        "other": add_key(keys_file, "other", models=["someone-else"]),
        "metered": add_key(keys_file, "metered", requests="3/minute"),
        "wordy": add_key(keys_file, "wordy", chars="60/minute"),
    }
    config = write_yaml(
        tmp / "serve.yaml",
        {
            "models": [str(toy_model)],
            "auth": {"keys_file": "keys.yaml"},
            "limits": {"max_body_bytes": 4000, "max_inputs": 4, "max_chars": 200},
            "batching": {"max_batch_size": 16, "max_wait_ms": 2, "micro_batch_size": 2},
        },
    )
    server = ServerProcess(["--config", str(config)], tmp).wait_ready()
    yield server, keys
    assert server.terminate() == 0


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def prometheus_server(tmp: Path, target: str) -> Iterator[str]:
    """A real Prometheus scraping ``target`` (host:port) every second, with the repo's scrape config."""
    import yaml

    binary = need_binary("prometheus", "prometheus")
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["static_configs"] = [{"targets": [target]}]
    config_file = write_yaml(tmp / "prometheus.yml", config)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, 30, "prometheus")
        yield url
    finally:
        stop(proc)


def nan_model_copy(source: Path, dest: Path) -> Path:
    """A real model folder whose weights are NaN (what a diverged training run leaves), saved by miniml."""
    import torch

    from miniml.models.folder import load_model_folder, save_model_folder

    loaded = load_model_folder(source)
    with torch.no_grad():
        for param in loaded.module.parameters():
            param.fill_(float("nan"))
    save_model_folder(dest, loaded.module, loaded.featurizer, loaded.spec, loaded.info)
    return dest

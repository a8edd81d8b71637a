"""`miniml hub up | status | down`: a real MLflow server on PostgreSQL with its artifacts in S3 (moto).

Member A trains, promotes, evaluates and optimizes against the hub; member B, with an empty MINIML_HOME
and no S3 credentials at all, serves A's champion over HTTP: the server proxies every artifact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from miniml.cli import main
from serve_support import REPO, ServerProcess
from store_support import S3Server, free_port, moto_s3, postgres_server, s3_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "train"))
from train_support import make_toy, write_config

pytestmark = pytest.mark.services
HASHING = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server("hub") as uri:
        yield uri


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


def miniml(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m miniml ARGS`` in a subprocess (a hub outlives the command that started it)."""
    full = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MINIML_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "miniml", *args], env=full, capture_output=True, text=True, timeout=180
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def no_s3_env(home: Path) -> dict[str, str]:
    """A member's environment without any S3 setting or credential."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, MINIML_HOME=str(home))
    return env


def test_hub_serves_a_team(
    postgres: str,
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3.make_bucket(f"hub{uuid.uuid4().hex[:8]}")
    s3_env(monkeypatch, s3.endpoint)  # the hub's own credentials
    port = free_port()
    settings = {
        "backend_store_uri": postgres,
        "artifacts_destination": f"s3://{bucket}/artifacts",
        "s3_endpoint_url": s3.endpoint,
        "port": port,
        "workers": 1,
    }
    hub_yaml = tmp_path / "hub.yaml"
    hub_yaml.write_text(yaml.safe_dump(settings))
    admin = tmp_path / "admin"
    started = miniml("hub", "up", "--config", str(hub_yaml), home=admin)
    try:
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        assert f"export MLFLOW_TRACKING_URI={url}" in started.stdout
        assert (admin / "hub" / "env").read_text() == f"export MLFLOW_TRACKING_URI={url}\n"
        state = json.loads((admin / "hub" / "hub.json").read_text())
        assert state["url"] == url and state["artifacts_destination"] == f"s3://{bucket}/artifacts"
        hub_tree = psutil.Process(state["pid"]).children(recursive=True)
        assert not [p for p in hub_tree if "huey" in " ".join(p.cmdline())]  # no idle MLflow job workers
        monkeypatch.setenv("MINIML_HOME", str(admin))  # the commands below run in this process
        code, out, _ = cli(capsys, "hub", "status")
        assert code == 0 and f"hub: running at {url}" in out

        # a second `hub up`: from the same home, and from another home on the same port
        code, _, err = cli(capsys, "hub", "up", "--config", str(hub_yaml))
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"error: the hub is already running at {url}")
        monkeypatch.setenv("MINIML_HOME", str(tmp_path / "other"))
        code, _, err = cli(capsys, "hub", "up", "--config", str(hub_yaml))
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"error: port {port} on 127.0.0.1 is already in use")
        assert not (tmp_path / "other" / "hub" / "hub.json").exists()

        team_member_a(url, tmp_path, monkeypatch, capsys)
        keys = s3.keys(bucket, "artifacts/")
        assert any(k.endswith("/artifacts/model/model.safetensors") for k in keys), keys
        team_member_b(url, tmp_path)
    finally:
        stopped = miniml("hub", "down", home=admin)
    assert stopped.returncode == 0 and f"stopped the hub at {url}" in stopped.stdout
    assert not (admin / "hub" / "hub.json").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
    monkeypatch.setenv("MINIML_HOME", str(admin))
    assert cli(capsys, "hub", "status")[0] == 1


def team_member_a(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Train, promote, evaluate and optimize through the hub, with no S3 credentials."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MINIML_HOME", str(tmp_path / "member-a"))
    dataset = make_toy()
    cfg = write_config(tmp_path / "train.yaml", dataset, HASHING)
    code, out, err = cli(capsys, "train", str(cfg))
    assert code == 0 and "trained toy: version 1" in out, err
    code, out, err = cli(capsys, "models", "promote", "toy", "1")
    assert code == 0, err
    code, out, err = cli(capsys, "evaluate", "models:/toy@champion", "toy", "--out", str(tmp_path / "ev"))
    assert code == 0 and json.loads(out)["accuracy"] > 0.9, err
    code, out, err = cli(capsys, "optimize", "models:/toy@champion", "--int8", "--set", "measure.repeats=3")
    assert code == 0 and "models:/toy/2" in out, err
    from miniml.registry.store import get_version

    assert get_version("toy", 2).source.startswith("mlflow-artifacts:/")


def team_member_b(url: str, tmp_path: Path) -> None:
    """An empty home with no S3 settings serves the champion the hub holds."""
    home = tmp_path / "member-b"
    env = {**no_s3_env(home), "MLFLOW_TRACKING_URI": url}
    server = ServerProcess(["models:/toy@champion"], tmp_path, env=env).wait_ready()
    try:
        answer = httpx.post(
            f"{server.url}/v1/models/toy/predict", json={"inputs": ["jag heter anna och bor i stockholm"]}
        ).json()
        assert answer["version"] == 1
        assert answer["predictions"][0]["label"] == "sv"
        assert (home / "models" / "toy" / "1" / "model.safetensors").is_file()
    finally:
        assert server.terminate() == 0

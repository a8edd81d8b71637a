"""hub.yaml validation, the server's command line and what never leaks: the database password."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniml.errors import ConfigError
from miniml.hub import load_hub_config
from miniml.hub.server import _scrub, check_port, server_command

GOOD = (
    "backend_store_uri: postgresql://team:s3cret@db:5432/mlflow\nartifacts_destination: s3://team/mlflow/\n"
)


def test_defaults_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hub.yaml").write_text(GOOD)
    cfg = load_hub_config(tmp_path / "hub.yaml")
    assert (cfg.host, cfg.port, cfg.url) == ("127.0.0.1", 5000, "http://127.0.0.1:5000")
    assert cfg.artifacts_destination == "s3://team/mlflow"
    monkeypatch.setenv("MINIML_HUB__PORT", "5055")
    cfg = load_hub_config(tmp_path / "hub.yaml", ["host=0.0.0.0", "public_url=http://hub.team:5055/"])
    assert cfg.port == 5055 and cfg.url == "http://hub.team:5055"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("backend_store_uri: /tmp/runs\nartifacts_destination: s3://b/x\n", "backend_store_uri"),
        ("backend_store_uri: postgresql://db/m\nartifacts_destination: mlruns\n", "artifacts_destination"),
        ("backend_store_uri: postgresql://db/m\n", "artifacts_destination"),
        (GOOD + "port: 99999\n", "port"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "hub.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_hub_config(tmp_path / "hub.yaml")
    assert key in str(info.value) and "\n" not in str(info.value)


def test_password_stays_off_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "hub.yaml").write_text(GOOD + "s3_endpoint_url: http://minio:9000\n")
    command, env = server_command(load_hub_config(tmp_path / "hub.yaml"))
    assert not any("s3cret" in part for part in command)
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://team:s3cret@")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert command[command.index("--artifacts-destination") + 1] == "s3://team/mlflow"
    assert "--serve-artifacts" in command
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"  # no idle job workers (about 1.2 GB)
    assert _scrub("FATAL: password s3cret rejected", "postgresql://team:s3cret@db/m") == (
        "FATAL: password *** rejected"
    )


def test_busy_port_is_one_line() -> None:
    import socket

    from miniml.hub.server import HubError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(HubError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port("127.0.0.1", port)

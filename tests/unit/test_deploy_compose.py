"""deploy/compose.yaml runs the hub with the same command and settings file as `miniml hub up`, no secrets."""

from __future__ import annotations

from pathlib import Path

import yaml

from miniml.hub import load_hub_config
from miniml.hub.server import server_command

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_runs_the_team_hub() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"miniml", "redis", "prometheus", "grafana", "postgres", "minio", "bucket", "hub"} <= set(services)
    hub = services["hub"]
    assert hub["entrypoint"] == ["miniml", "hub", "up", "--foreground", "--config", "/config/hub.yaml"]
    assert "./hub.yaml:/config/hub.yaml:ro" in hub["volumes"]
    assert services["miniml"]["environment"]["MLFLOW_TRACKING_URI"] == "http://hub:5000"
    assert hub["depends_on"]["bucket"] == {"condition": "service_completed_successfully"}


def test_compose_holds_no_secrets() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "ACCESS_KEY")):
                assert str(value).startswith("${") and ":?" in str(value), (name, key)


def test_compose_hub_settings_are_valid() -> None:
    cfg = load_hub_config(DEPLOY / "hub.yaml")
    assert cfg.artifacts_destination == "s3://miniml/mlflow" and cfg.url == "http://hub:5000"
    userinfo = cfg.backend_store_uri.split("//", 1)[1].split("@")[0]
    assert userinfo == "miniml"  # a user, no password: PGPASSWORD carries it
    command, _ = server_command(cfg)
    assert "--serve-artifacts" in command and command[command.index("--host") + 1] == "0.0.0.0"


def test_compose_serves_with_the_shipped_keys_file_and_refuses_to_start_without_a_key() -> None:
    import pytest

    from miniml.errors import ConfigError
    from miniml.serve.auth import KeyStore, read_keys_file
    from miniml.serve.settings import AuthSettings

    miniml = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["miniml"]
    assert miniml["environment"]["MINIML_SERVE__AUTH__KEYS_FILE"] == "/keys/keys.yaml"
    assert any(v.startswith("./keys:/keys") for v in miniml["volumes"])  # the folder: renames are seen
    shipped = DEPLOY / "keys" / "keys.yaml"
    assert read_keys_file(shipped) == []  # no key ships: nobody knows a key the image would accept
    with pytest.raises(ConfigError, match="without API keys"):  # the Dockerfile binds 0.0.0.0
        KeyStore.from_settings(AuthSettings(keys_file=shipped), host="0.0.0.0")

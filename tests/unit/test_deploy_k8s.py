"""deploy/k8s/miniml.yaml: every manifest parses, its command line and serve.yaml are accepted by miniml's own
CLI and settings schema, and the objects refer to each other consistently (no cluster needed)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniml.errors import ConfigError
from miniml.serve.auth import KeyStore
from miniml.serve.server import load_settings
from serve_support import toy_model

__all__ = ["toy_model"]  # a pytest fixture

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "miniml.yaml").read_text()) if d]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def dockerfile_entrypoint() -> list[str]:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            return list(yaml.safe_load(line.split(" ", 1)[1]))
    raise AssertionError("no ENTRYPOINT in deploy/Dockerfile")


def server_container() -> dict[str, Any]:
    pod = manifests()["Deployment/miniml"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def test_the_server_command_line_and_settings_are_accepted(tmp_path: Path) -> None:
    import typer.main

    from miniml.cli import app

    objects = manifests()
    container = server_container()
    argv = [*dockerfile_entrypoint(), *container["args"]]
    assert argv[:2] == ["miniml", "serve"]
    group = typer.main.get_command(app)
    serve = group.get_command(group.make_context("miniml", ["serve"]), "serve")  # type: ignore[attr-defined]
    params = serve.make_context("serve", argv[2:]).params  # click refuses an unknown option or bad value
    assert (str(params["config"]), params["host"], params["port"]) == ("/config/serve.yaml", "0.0.0.0", 8000)

    config = tmp_path / "serve.yaml"  # where the ConfigMap is mounted
    config.write_text(objects["ConfigMap/miniml-serve"]["data"]["serve.yaml"])
    assert container["args"] == ["--config", "/config/serve.yaml"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = load_settings(config, host="0.0.0.0", port=8000, environ=env)
    assert settings.models == ["models:/nordic-langid@champion"] and settings.follow_aliases
    assert settings.cache.backend == "redis" and "miniml-redis:6379" in settings.cache.url
    assert settings.ratelimit.storage.startswith("redis://miniml-redis:6379")
    assert str(settings.auth.keys_file) == "/keys/keys.yaml"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["keys"] == "/keys" and mounts["config"] == "/config"  # the Secret as a folder
    assert env["MINIML_HOME"] == mounts["data"]

    pod = objects["Deployment/miniml"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.server.graceful_timeout_s
    commented = [
        line for line in (DEPLOY / "k8s" / "miniml.yaml").read_text().splitlines() if "KEYS_REDIS" in line
    ]
    redis_env = yaml.safe_load(commented[-1].strip().lstrip("#").strip().lstrip("- "))
    with_redis = load_settings(config, environ={**env, redis_env["name"]: redis_env["value"]})
    assert with_redis.auth.keys_redis == "redis://miniml-redis:6379/2"


def test_probes_and_scrape_annotations_point_at_real_routes(toy_model: Path) -> None:
    from fastapi.testclient import TestClient

    from miniml.serve.app import create_app
    from miniml.serve.settings import ServeSettings

    container = server_container()
    port = container["ports"][0]
    assert port["containerPort"] == 8000 and f'"--port", "{port["containerPort"]}"' in (
        (DEPLOY / "Dockerfile").read_text()
    )
    annotations = manifests()["Deployment/miniml"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8000"
    paths = [container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert paths == ["/healthz", "/readyz", "/healthz"]
    with TestClient(
        create_app(ServeSettings(models=[str(toy_model)]))
    ) as client:  # the real app answers each of them
        for path in [*paths, annotations["prometheus.io/path"]]:
            assert client.get(path).status_code == 200, path
        assert "miniml_" in client.get(annotations["prometheus.io/path"]).text


def test_objects_refer_to_each_other() -> None:
    objects = manifests()
    deployment = objects["Deployment/miniml"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service/miniml"]["spec"]["selector"].items() <= labels.items()
    assert objects["PodDisruptionBudget/miniml"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = objects["HorizontalPodAutoscaler/miniml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "miniml")
    redis_labels = objects["Deployment/miniml-redis"]["spec"]["template"]["metadata"]["labels"]
    assert objects["Service/miniml-redis"]["spec"]["selector"].items() <= redis_labels.items()
    redis_args = objects["Deployment/miniml-redis"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert redis_args[redis_args.index("--maxmemory-policy") + 1] == "volatile-lru"  # keys never evicted
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "miniml-keys"
    assert volumes["config"]["configMap"]["name"] == "miniml-serve"


def test_documented_commands_match_and_a_keyless_secret_refuses_to_start(tmp_path: Path) -> None:
    header = [line[1:].strip() for line in (DEPLOY / "k8s" / "miniml.yaml").read_text().splitlines()]
    commands = [shlex.split(line) for line in header if line.startswith(("kubectl", "miniml"))]
    assert ["kubectl", "-n", "miniml", "apply", "-f", "deploy/k8s/miniml.yaml"] in commands
    secret = next(c for c in commands if c[:4] == ["kubectl", "-n", "miniml", "create"])
    assert secret[4:7] == ["secret", "generic", "miniml-keys"] and "--from-file=keys.yaml" in secret
    keys = tmp_path / "keys.yaml"  # an empty keys file in the Secret: a 0.0.0.0 server does not start
    keys.write_text("keys: []\n")
    from miniml.serve.settings import AuthSettings

    with pytest.raises(ConfigError, match="without API keys"):
        KeyStore.from_settings(AuthSettings(keys_file=keys), host="0.0.0.0")

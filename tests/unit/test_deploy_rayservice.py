"""deploy/k8s/rayservice.yaml: the KubeRay RayService parses, its Serve config is accepted by Ray's own
schema, its application builder is miniml's and builds the `miniml serve --backend ray` application from the
ConfigMap's serve.yaml (accepted by miniml's schema), and the pieces agree with each other, the image and
the pinned Ray version (no cluster needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFEST = DEPLOY / "k8s" / "rayservice.yaml"


def objects(path: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def ray_service() -> dict[str, Any]:
    service = objects()["RayService/miniml-ray"]
    assert service["apiVersion"] == "ray.io/v1"
    return dict(service["spec"])


def serve_config() -> dict[str, Any]:
    return dict(yaml.safe_load(ray_service()["serveConfigV2"]))


def pinned_ray() -> str:
    found = re.search(r'"ray\[[a-z,]+\]==([0-9.]+)"', (DEPLOY.parent / "pyproject.toml").read_text())
    assert found
    return found[1]


def settings_from_configmap(tmp_path: Path) -> Any:
    from miniml.serve.server import load_settings

    config = tmp_path / "serve.yaml"  # where the ConfigMap is mounted (/config/serve.yaml)
    config.write_text(objects()["ConfigMap/miniml-ray-serve"]["data"]["serve.yaml"])
    head = ray_service()["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in head["env"]}
    return config, load_settings(config, environ=env)


def test_the_serve_config_is_accepted_by_ray_and_builds_miniml_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray.serve")
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema

    from miniml.backends.ray.serving import DEPLOYMENT, build_app, deployment_options

    schema = ServeDeploySchema.model_validate(serve_config())  # Ray's own schema of serveConfigV2
    (app,) = schema.applications
    assert (app.name, app.route_prefix) == ("miniml", "/")
    assert import_attr(app.import_path) is build_app
    assert app.args == {"config": "/config/serve.yaml"}

    config, settings = settings_from_configmap(tmp_path)
    built = call_user_app_builder_with_args_if_necessary(
        build_app, {**app.args, "config": str(config)}
    )  # what Serve's controller does with import_path + args
    deployment = built._bound_deployment
    assert deployment.name == DEPLOYMENT
    options = deployment_options(settings)
    assert deployment._deployment_config.autoscaling_config.max_replicas == 8
    assert options["autoscaling_config"]["min_replicas"] == 2 and options["max_ongoing_requests"] == 256
    assert deployment.ray_actor_options["num_cpus"] == settings.backend.cpus_per_replica

    http = schema.http_options  # the proxies listen where the settings say the server does
    assert (http.host, http.port) == (settings.server.host, settings.server.port) == ("0.0.0.0", 8000)
    assert schema.proxy_location.value == settings.backend.proxy_location
    with pytest.raises(Exception, match="unknown application args"):
        call_user_app_builder_with_args_if_necessary(build_app, {"cfg": "x"})


def test_the_configmap_settings_are_miniml_s_and_fit_the_cluster(tmp_path: Path) -> None:
    _, settings = settings_from_configmap(tmp_path)
    assert settings.backend.type == "ray" and settings.backend.replicas == "auto"
    assert settings.models == ["models:/nordic-langid@champion"] and settings.follow_aliases
    assert settings.cache.backend == "redis" and settings.ratelimit.storage.startswith(
        "redis://miniml-redis:"
    )
    assert str(settings.auth.keys_file) == "/keys/keys.yaml"

    cluster = ray_service()["rayClusterConfig"]
    assert cluster["rayVersion"] == pinned_ray() and cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # replicas run on workers
    (workers,) = cluster["workerGroupSpecs"]
    cpus = int(workers["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    auto = settings.backend.autoscaling
    assert workers["minReplicas"] * cpus >= auto.min_replicas * settings.backend.cpus_per_replica
    assert workers["maxReplicas"] * cpus >= auto.max_replicas * settings.backend.cpus_per_replica


def test_image_volumes_and_redis_refer_to_real_things() -> None:
    cluster = ray_service()["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        w["template"]["spec"] for w in cluster["workerGroupSpecs"]
    ]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert (
        "ARG EXTRAS=" in dockerfile and 'pip install ".[${EXTRAS}]"' in dockerfile
    )  # the ray extra pins Ray
    for pod in pods:
        (container,) = pod["containers"]
        assert container["image"] == "miniml-ray:latest"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["config"]["configMap"]["name"] == "miniml-ray-serve"
        assert volumes["keys"]["secret"]["secretName"] == "miniml-keys"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert (mounts["config"], mounts["keys"]) == ("/config", "/keys")
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["MINIML_HOME"] == mounts["data"]
    plain = objects(DEPLOY / "k8s" / "miniml.yaml")  # the Redis it shares, selectable by its label
    for kind in ("Service", "Deployment"):
        labels = plain[f"{kind}/miniml-redis"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "miniml-redis"

    header = [line[1:].strip() for line in MANIFEST.read_text().splitlines() if line.startswith("#")]
    commands = [
        shlex.split(line.split("  #")[0]) for line in header if line.startswith(("kubectl", "docker"))
    ]
    assert ["kubectl", "-n", "miniml", "apply", "-f", "deploy/k8s/rayservice.yaml"] in commands
    build = [
        "docker",
        "build",
        "-f",
        "deploy/Dockerfile",
        "--build-arg",
        "EXTRAS=s3,ray",
        "-t",
        "miniml-ray:latest",
    ]
    assert [*build, "."] in commands

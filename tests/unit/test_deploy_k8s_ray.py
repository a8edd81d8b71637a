"""deploy/k8s/raycluster.yaml and rayjob.yaml (KubeRay): they parse, their miniml command lines are accepted
by miniml's own CLI, the configs they run load through their schemas, and the pods agree with each other and
with the image (no Kubernetes needed)."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from miniml.pipeline.config import load_pipeline

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
IMAGE_ROOT = "/app"  # the Dockerfile's WORKDIR, where it copies examples/


def documents(name: str) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def cli_params(argv: list[str]) -> dict[str, Any]:
    """The parameters miniml's CLI parses from ``argv`` (click refuses an unknown option or a bad value)."""
    import typer.main

    from miniml.cli import app

    assert argv[0] == "miniml"
    command: Any = typer.main.get_command(app)
    args = argv[1:]
    while hasattr(command, "get_command"):  # walk the groups: `job submit`, `pipeline run`
        context = command.make_context(command.name, list(args), resilient_parsing=True)
        command, args = command.get_command(context, args[0]), args[1:]
        assert command is not None, argv
    return dict(command.make_context(command.name, list(args)).params)


def ray_pods(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    return [g["template"]["spec"] for g in groups]


def ray_pin() -> str:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = extras["ray"]
    return pin.split("==")[1]


def cluster_cpus(cluster_spec: dict[str, Any]) -> tuple[float, int]:
    """(CPUs of the worker pods, worker pods) at the group's replicas."""
    cpus, pods = 0.0, 0
    for group in cluster_spec["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        cpus += group["replicas"] * float(container["resources"]["limits"]["cpu"])
        pods += group["replicas"]
    return cpus, pods


def check_cluster_spec(spec: dict[str, Any]) -> None:
    """Every pod: the miniml image, the same settings, MINIML_HOME on the shared claim; the head serves the
    Jobs API; Ray's version is miniml's pin."""
    assert spec["rayVersion"] == ray_pin()
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in head["ports"]} == {6379, 8265, 10001}
    envs = []
    for pod in ray_pods(spec):
        (container,) = pod["containers"]
        assert container["image"] == "miniml-ray:latest"
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert env["MINIML_HOME"] == mounts["data"]
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "miniml-data"
        assert not [k for k in env if any(w in k for w in ("KEY", "SECRET", "PASSWORD", "TOKEN_"))]
        envs.append(env)
    assert all(env == envs[0] for env in envs)


def test_raycluster_and_its_documented_job_submit() -> None:
    objects = documents("raycluster.yaml")
    claim = objects["PersistentVolumeClaim/miniml-data"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # one MINIML_HOME for every node
    spec = objects["RayCluster/miniml-ray"]["spec"]
    check_cluster_spec(spec)

    header = [line[1:].strip() for line in (K8S / "raycluster.yaml").read_text().splitlines()]
    (submit,) = [shlex.split(line) for line in header if line.startswith("miniml job submit")]
    params = cli_params(submit)
    assert params["address"] == "http://127.0.0.1:8265" and params["follow"] and params["backend"] == "ray"
    commands = [shlex.split(line) for line in header if line.startswith(("kubectl", "docker", "helm"))]
    assert ["kubectl", "-n", "miniml", "apply", "-f", "deploy/k8s/raycluster.yaml"] in commands
    pipeline = load_pipeline(REPO / params["config"], [*params["set_"], f"backend.type={params['backend']}"])
    section = pipeline.config.backend
    assert section is not None
    assert section.type == "ray" and section.placement == "spread"
    cpus, pods = cluster_cpus(spec)
    assert section.workers <= pods and section.workers * section.cpus_per_worker <= cpus


def test_rayjob_runs_an_example_pipeline_on_a_cluster_of_its_own() -> None:
    objects = documents("rayjob.yaml")
    job = objects["RayJob/miniml-train-nordic-langid"]["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    check_cluster_spec(job["rayClusterSpec"])
    long_lived = documents("raycluster.yaml")["RayCluster/miniml-ray"]["spec"]
    for mine, theirs in zip(ray_pods(job["rayClusterSpec"]), ray_pods(long_lived), strict=True):
        assert mine == theirs  # the same pods as the RayCluster's

    argv = shlex.split(job["entrypoint"])
    params = cli_params(argv)
    config = Path(params["config"])
    assert config.is_relative_to(IMAGE_ROOT)  # a file the image holds: its examples/ under WORKDIR
    local = REPO / config.relative_to(IMAGE_ROOT)
    pipeline = load_pipeline(local, [*params["set_"], f"backend.type={params['backend']}"])
    section = pipeline.config.backend
    assert section is not None
    assert section.type == "ray" and section.workers == 2 and section.placement == "spread"
    cpus, pods = cluster_cpus(job["rayClusterSpec"])
    assert section.workers <= pods and section.workers * section.cpus_per_worker <= cpus


def test_the_image_holds_the_examples_and_can_hold_ray() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"WORKDIR {IMAGE_ROOT}" in dockerfile and "COPY examples ./examples" in dockerfile
    assert "ARG EXTRAS=" in dockerfile and 'pip install ".[${EXTRAS}]"' in dockerfile
    assert "!examples/" in (REPO / "deploy" / "Dockerfile.dockerignore").read_text()
    for name in ("raycluster.yaml", "rayjob.yaml"):
        assert "--build-arg EXTRAS=s3,ray -t miniml-ray:latest" in (K8S / name).read_text()

"""The ``backend:`` section of the serve settings, the Ray Serve options it becomes, and the one-line errors
of ``miniml serve --backend ray`` that need no cluster (no Ray, no cluster at the address, --detach)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from miniml.cli import main
from miniml.errors import ConfigError
from miniml.serve.server import load_settings
from miniml.serve.settings import ServeSettings


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_backend_section_defaults_and_overrides() -> None:
    settings = load_settings(None, models=["m"], backend="ray", overrides=["backend.replicas=3"])
    b = settings.backend
    assert (b.type, b.address, b.replicas, b.cpus_per_replica, b.gpus_per_replica) == ("ray", "auto", 3, 1, 0)
    assert load_settings(None).backend.type == "local"
    auto = load_settings(
        None,
        overrides=["backend.replicas=auto", "backend.autoscaling.max_replicas=2"],
        environ={"MINIML_SERVE__BACKEND__AUTOSCALING__UPSCALE_DELAY_S": "1"},
    ).backend
    assert (
        auto.replicas == "auto"
        and auto.autoscaling.max_replicas == 2
        and auto.autoscaling.upscale_delay_s == 1
    )
    assert auto.min_replicas == 1


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("backend.replicas=0", "replicas must be a count from 1 to 4096, or auto"),
        ("backend.replicas=many", "backend.replicas"),
        ("backend.address=not an address", "use auto, local, HOST:PORT"),
        (
            "backend.autoscaling.min_replicas=3",
            "min_replicas (3) is above max_replicas (2)",
        ),
        (
            "backend.autoscaling.look_back_period_s=5",
            "look_back_period_s (5) must be above metrics_interval_s (10)",
        ),
        ("backend.type=k8s", "backend.type"),
    ],
)
def test_bad_backend_settings_are_one_line(override: str, words: str) -> None:
    extra = ["backend.autoscaling.max_replicas=2"] if "min_replicas" in override else []
    with pytest.raises(ConfigError) as err:
        load_settings(None, overrides=[override, *extra])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_deployment_options_follow_the_section() -> None:
    from miniml.backends.ray.serving import deployment_options

    fixed = deployment_options(
        ServeSettings.model_validate({"backend": {"type": "ray", "replicas": 2, "cpus_per_replica": 0.5}})
    )
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert fixed["max_ongoing_requests"] == 256  # not Ray's 5: a replica batches many requests
    auto = deployment_options(
        ServeSettings.model_validate(
            {"backend": {"replicas": "auto", "autoscaling": {"min_replicas": 1, "max_replicas": 3}}}
        )
    )
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"] | {} == {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 32.0,
        "upscale_delay_s": 30.0,
        "downscale_delay_s": 600.0,
        "look_back_period_s": 30.0,
        "metrics_interval_s": 10.0,
    }


def test_the_replica_threads_are_its_cpus() -> None:
    from miniml.backends.ray.replica import replica_settings

    two = ServeSettings.model_validate({"backend": {"cpus_per_replica": 2}})
    assert replica_settings(two).batching.threads == 2
    half = ServeSettings.model_validate({"backend": {"cpus_per_replica": 0.5}})
    assert replica_settings(half).batching.threads == 1
    chosen = ServeSettings.model_validate({"backend": {"cpus_per_replica": 2}, "batching": {"threads": 3}})
    assert replica_settings(chosen).batching.threads == 3


def test_more_replicas_than_cpus_is_refused() -> None:
    from miniml.backends.ray.cluster import ClusterInfo
    from miniml.backends.ray.serving import check_capacity

    info = ClusterInfo("10.0.0.1:6379", False, cpus=2, gpus=0, nodes=2)
    check_capacity(info, ServeSettings.model_validate({"backend": {"replicas": 2}}))
    with pytest.raises(
        ConfigError, match=r"3 replica\(s\) × backend.cpus_per_replica=1 need 3 CPUs, but the Ray"
    ):
        check_capacity(info, ServeSettings.model_validate({"backend": {"replicas": 3}}))
    with pytest.raises(ConfigError, match="need 1 GPUs"):
        check_capacity(info, ServeSettings.model_validate({"backend": {"gpus_per_replica": 1}}))
    auto = {"replicas": "auto", "autoscaling": {"min_replicas": 1, "max_replicas": 8}}
    check_capacity(info, ServeSettings.model_validate({"backend": auto}))  # more nodes may come


def test_no_cluster_at_the_address_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    model = str(tmp_path / "no-model")
    code, _, err = run_cli(capsys, "serve", model, "--backend", "ray", "--set", "backend.address=127.0.0.1:9")
    assert (
        code == 2
        and err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")
        and err.count("\n") == 1
    )
    code, _, err = run_cli(capsys, "serve", "status", "--set", "backend.address=127.0.0.1:9")
    assert code == 2 and err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")


def test_ray_missing_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = run_cli(capsys, "serve", str(tmp_path), "--backend", "ray")
    assert (
        code == 2
        and err == "error: backend ray needs Ray, which is not installed (pip install 'miniml[ray]')\n"
    )


def test_detach_needs_the_ray_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "serve", str(tmp_path), "--detach")
    assert code == 2 and err.startswith("error: --detach needs --backend ray")

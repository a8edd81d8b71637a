"""The ``backend:`` section and the Ray backend's checks that need no cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from miniml.backends import LocalBackend, get_backend
from miniml.compute import BackendConfig, backend_overrides
from miniml.config import load_config
from miniml.errors import ConfigError
from miniml.evaluate.predict import PredictConfig
from miniml.train.config import load_train_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_local() -> None:
    section = BackendConfig.model_validate({})
    assert section.is_local and section.workers == 2 and section.placement == "pack"
    assert isinstance(get_backend(section), LocalBackend) and isinstance(get_backend(None), LocalBackend)


@pytest.mark.parametrize("address", ["auto", "local", "127.0.0.1:6379", "ray://head:10001", "[::1]:6379"])
def test_known_addresses(address: str) -> None:
    assert BackendConfig.model_validate({"type": "ray", "address": address}).address == address


@pytest.mark.parametrize(
    "data",
    [
        {"type": "spark"},
        {"address": "head"},
        {"address": "ftp://head:21"},
        {"address": "http://head:8265"},  # the Jobs API: not built yet
        {"workers": 0},
        {"cpus_per_worker": 0},
        {"gpus_per_worker": -1},
        {"placement": "scatter"},
        {"worker": 2},  # a typo is an error, not a silent default
    ],
)
def test_bad_sections(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BackendConfig.model_validate(data)


def test_flag_and_set_reach_the_train_config(tmp_path: Path) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "model_name: m\ndataset: d\nmodel: {kind: hashing_bag}\nbackend: {workers: 3}\n", encoding="utf-8"
    )
    config = load_train_config(cfg, ["backend.cpus_per_worker=2"], flags=backend_overrides("ray"))
    assert (config.backend.type, config.backend.workers, config.backend.cpus_per_worker) == ("ray", 3, 2.0)
    assert load_train_config(cfg).backend.type == "local"
    predict = load_config(PredictConfig, None, ["backend.workers=4"], flags=backend_overrides("ray"))
    assert (predict.backend.type, predict.backend.workers) == ("ray", 4)
    assert backend_overrides(None) == {}


def test_unknown_backend_name() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'spark'"):
        get_backend("spark")


def test_local_imports_no_ray() -> None:
    """The default path (config loading, the local backend, the CLI's parser) never loads Ray."""
    code = (
        "import sys\n"
        "from miniml.cli import app\n"
        "from miniml.backends import get_backend\n"
        "from miniml.train.config import load_train_config\n"
        "c = load_train_config({'model_name': 'm', 'dataset': 'd', 'model': {'kind': 'hashing_bag'}})\n"
        "get_backend(c.backend)\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HOME": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from miniml.backends.ray.cluster import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what an absent package looks like to `import`
    with pytest.raises(ConfigError) as info:
        import_ray()
    assert "not installed" in str(info.value) and "miniml[ray]" in str(info.value)


def test_unreachable_address_fails_fast() -> None:
    import socket

    from miniml.backends.ray.cluster import choose_address

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    section = BackendConfig.model_validate({"type": "ray", "address": f"127.0.0.1:{port}"})
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        choose_address(section)
    assert choose_address(section.model_copy(update={"address": "local"})) is None


def test_more_workers_than_the_cluster_has() -> None:
    from miniml.backends.ray.cluster import ClusterInfo, check_resources

    info = ClusterInfo("127.0.0.1:6379", started=False, cpus=2.0, gpus=0.0, nodes=1)
    check_resources(info, BackendConfig.model_validate({"type": "ray", "workers": 2}))
    with pytest.raises(ConfigError, match=r"needs 3 CPUs, but the Ray cluster at 127\.0\.0\.1:6379 has 2"):
        check_resources(info, BackendConfig.model_validate({"type": "ray", "workers": 3}))
    with pytest.raises(ConfigError, match="needs 1 GPUs"):
        check_resources(
            info, BackendConfig.model_validate({"type": "ray", "workers": 1, "gpus_per_worker": 1})
        )

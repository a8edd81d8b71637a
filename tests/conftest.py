"""Shared fixtures: every test gets its own MINIML_HOME; the data mirror comes from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data" / "mirror"
# modules that start Ray clusters: one worker runs them all, so two clusters never compete for the cores
RAY_MODULES = {"test_ray_backend.py", "test_ray_cluster.py", "test_serve_ray.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For pytest-xdist's ``--dist loadgroup`` (what ``make test`` runs): a module's tests stay on one
    worker, so its module-scoped servers and clusters start once; the Ray modules share one worker."""
    for item in items:
        path = Path(item.path)
        group = "ray" if path.name in RAY_MODULES else str(path.relative_to(REPO))
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def miniml_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("miniml_home")
    monkeypatch.setenv("MINIML_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    return home


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The shared catalog mirror (a folder); tests that need real data skip loudly without it."""
    path = Path(os.environ.get("MINIML_DATA_MIRROR") or DEFAULT_MIRROR)
    if not path.is_dir():
        pytest.skip(f"data mirror not found at {path}; set MINIML_DATA_MIRROR")
    return path

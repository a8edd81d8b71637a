"""Shared fixtures: every test gets its own MINIML_HOME; the data mirror comes from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data" / "mirror"
# modules that start Ray clusters: one worker runs them all, so two clusters never compete for the cores
RAY_MODULES = {"test_ray_backend.py", "test_ray_cluster.py", "test_serve_ray.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``make test`` runs pytest-xdist (``-n 2 --dist loadfile``): a module's tests stay on one worker, in
    order, so its module-scoped servers and clusters start once; the Ray modules share one worker.

    A scheduler of our own because xdist 3.8's ``--dist loadgroup`` sets ``item._nodeid``, which pytest 9 no
    longer reads (the group marks are silently ignored)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "ray" if Path(module).name in RAY_MODULES else module

    return ModuleScheduling(config, log)


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

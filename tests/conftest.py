"""Shared fixtures: every test gets its own MINIML_HOME; the data mirror comes from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data" / "mirror"


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

"""Registry tests run against a real embedded MLflow store (SQLite) in each test's MINIML_HOME.

Creating a fresh MLflow SQLite store runs every schema migration (5-10 s on a busy 2-core machine), so the
session builds one blank store and each test starts from a copy of it: same schema, no shared state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_support import make_model_folder, seed_embedded_store, shared_blank_store


@pytest.fixture(autouse=True)
def embedded_store(miniml_home: Path) -> Path:
    return seed_embedded_store(miniml_home, shared_blank_store())


@pytest.fixture
def model_folder(tmp_path: Path):
    """Factory: a real model folder (miniml.json + safetensors) with the given metrics and dataset."""

    def make(name: str = "demo", **info: object) -> Path:
        return make_model_folder(tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}", name=name, **info)

    return make

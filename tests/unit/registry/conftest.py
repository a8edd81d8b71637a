"""Registry tests run against a real embedded MLflow store (SQLite) in each test's MINIML_HOME.

Creating a fresh MLflow SQLite store runs every schema migration (5-10 s on a busy 2-core machine), so the
session builds one blank store and each test starts from a copy of it: same schema, no shared state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_support import blank_store, make_model_folder, seed_embedded_store


@pytest.fixture(scope="session")
def blank_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blank_store(tmp_path_factory.mktemp("mlflow_template"))


@pytest.fixture(autouse=True)
def embedded_store(miniml_home: Path, blank_mlflow_db: Path) -> Path:
    return seed_embedded_store(miniml_home, blank_mlflow_db)


@pytest.fixture
def model_folder(tmp_path: Path):
    """Factory: a real model folder (miniml.json + safetensors) with the given metrics and dataset."""

    def make(name: str = "demo", **info: object) -> Path:
        return make_model_folder(tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}", name=name, **info)

    return make

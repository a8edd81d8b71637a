"""Generative integration fixtures: a blank embedded MLflow store per test, copied from one template."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def blank_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated MLflow SQLite store per session (migrations take seconds); tests copy it."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from miniml.registry.backend import quiet_mlflow

    quiet_mlflow()
    folder = tmp_path_factory.mktemp("mlflow_template")
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", (folder / "artifacts").as_uri())
    RegistryStore(f"sqlite:///{db}")
    return db


@pytest.fixture
def mlflow_store(miniml_home: Path, blank_mlflow_db: Path) -> Path:
    """The embedded store of this test's MINIML_HOME, seeded from the blank template."""
    target = miniml_home / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(blank_mlflow_db, target)
    return target

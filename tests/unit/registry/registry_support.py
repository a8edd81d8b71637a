"""Helpers shared by the registry's unit and integration tests: a blank MLflow store, model folders."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from miniml.modelfolder import ModelInfo, write_info


@functools.cache
def shared_blank_store() -> Path:
    """One blank store per test process, shared by every registry test module (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="miniml-mlflow-template-"))
    atexit.register(shutil.rmtree, folder, True)
    return blank_store(folder)


def blank_store(folder: Path) -> Path:
    """Create a blank, fully migrated MLflow SQLite store in ``folder``; returns the db file."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from miniml.registry.backend import quiet_mlflow

    quiet_mlflow()
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", (folder / "artifacts").as_uri())
    RegistryStore(f"sqlite:///{db}")
    return db


def seed_embedded_store(home: Path, template: Path) -> Path:
    """Copy the blank store into ``home`` where miniml's embedded default looks for it."""
    target = home / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


def make_model_folder(folder: Path, *, name: str = "demo", **fields: Any) -> Path:
    """A minimal real model folder: ``miniml.json`` plus a small safetensors file."""
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "name": name,
        "task": "classification",
        "architecture": "hashing_bag",
        "labels": ["neg", "pos"],
        "dataset": {"name": "toy", "fingerprint": "fp-toy-1"},
        "metrics": {"accuracy": 0.8, "macro_f1": 0.75},
    }
    info.update(fields)
    weights = np.arange(12, dtype=np.float32).reshape(3, 4) * float(len(folder.name))
    save_file({"embedding.weight": weights}, str(folder / "model.safetensors"))
    write_info(folder, ModelInfo(**info))  # last: its manifest lists the weights
    return folder

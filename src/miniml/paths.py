"""Where miniml keeps its files: everything lives under ``MINIML_HOME`` (default ``~/.miniml``).

Read at call time, never at import time, so tests and callers can point it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The root folder for caches, datasets, runs and the embedded MLflow store."""
    return Path(os.environ.get("MINIML_HOME") or Path.home() / ".miniml").expanduser().resolve()


def cache_dir() -> Path:
    """Content-addressed download cache (``cache/sha256/<hex>``)."""
    return home() / "cache"


def datasets_dir() -> Path:
    """Prepared datasets: ``datasets/NAME/FINGERPRINT/``."""
    return home() / "datasets"


def runs_dir() -> Path:
    """Working folders of training runs (checkpoints, model folders before registration)."""
    return home() / "runs"


def mlflow_dir() -> Path:
    """The embedded MLflow store: ``mlflow.db`` (SQLite) and ``artifacts/``."""
    return home() / "mlflow"

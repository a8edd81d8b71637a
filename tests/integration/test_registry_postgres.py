"""Tracking and registry against a real PostgreSQL server (``MLFLOW_TRACKING_URI=postgresql://...``).

SQLAlchemy 2.1 drives ``postgresql://`` with psycopg 3, so that is the pinned driver (``psycopg[binary]``).

The test starts its own PostgreSQL (Debian ``postgresql`` binaries, see ``tests/store_support.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from store_support import postgres_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import make_model_folder

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    with postgres_server() as uri:
        yield uri


def test_register_and_resolve_on_postgresql(
    postgres_uri: str, miniml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from miniml.registry import promote, store
    from miniml.registry.tracking import RunTracker, default_tracking_uri
    from miniml.runtime import resolve

    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_uri)
    assert default_tracking_uri() == postgres_uri
    folder = make_model_folder(tmp_path / "model", name="pg-model", metrics={"macro_f1": 0.6})
    with RunTracker("pg-model") as run:
        run.log_params({"lr": 0.1})
        first = store.register_model("pg-model", folder, run_id=run.run_id)
    second = store.register_model("pg-model", make_model_folder(tmp_path / "m2", metrics={"macro_f1": 0.7}))
    assert (first.version, second.version) == (1, 2)
    assert promote.promote("pg-model", 1).promoted
    assert promote.promote("pg-model", 2).promoted
    assert store.get_version("pg-model", "champion").version == 2
    resolved = resolve("models:/pg-model@champion")
    assert resolved.version == 2 and (resolved.path / "model.safetensors").is_file()
    # the registry really lives in PostgreSQL, and the artifacts under MINIML_HOME, not ./mlruns
    with psycopg.connect(postgres_uri) as conn:
        rows = conn.execute("SELECT version FROM model_versions WHERE name = 'pg-model' ORDER BY version")
        assert [row[0] for row in rows.fetchall()] == [1, 2]
        aliases = conn.execute("SELECT alias, version FROM registered_model_aliases").fetchall()
        assert aliases == [("champion", 2)]
    assert not (miniml_home / "mlflow" / "mlflow.db").exists()
    assert first.source.startswith((miniml_home / "mlflow" / "artifacts").as_uri())
    assert not Path("mlruns").exists()

"""Tracking and registry against a real PostgreSQL server (``MLFLOW_TRACKING_URI=postgresql://...``).

SQLAlchemy 2.1 drives ``postgresql://`` with psycopg 3, so that is the pinned driver (``psycopg[binary]``).

The test starts its own PostgreSQL (Debian ``postgresql`` binaries: initdb + pg_ctl) in a temp folder on
a free loopback port, as the ``postgres`` user when run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import make_model_folder

pytestmark = pytest.mark.services


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_db_user(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; apt-get install -y postgresql")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root needs `runuser` to start PostgreSQL as the postgres user")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root needs a `postgres` system user (created by the postgresql package)")
    root = Path(tempfile.mkdtemp(prefix="miniml-pg-"))  # under /tmp: reachable by the postgres user
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(as_db_user([initdb, "-D", str(data), "-U", "miniml", "--auth=trust", "-E", "UTF8"]), **run)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"]
    subprocess.run(as_db_user(start), **run)
    try:
        import psycopg

        with psycopg.connect(f"postgresql://miniml@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        yield f"postgresql://miniml@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_db_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), **run)
        shutil.rmtree(root, ignore_errors=True)


def test_register_and_resolve_on_postgresql(
    postgres_uri: str, miniml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from miniml.registry import promote, store
    from miniml.registry.tracking import RunTracker, default_tracking_uri

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
    resolved = store.resolve_model("models:/pg-model@champion")
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

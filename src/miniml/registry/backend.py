"""The one place that talks to MLflow's client: which tracking store, one cached client per store.

The embedded default is SQLite at ``MINIML_HOME/mlflow/mlflow.db`` with artifacts in
``MINIML_HOME/mlflow/artifacts``; ``MLFLOW_TRACKING_URI`` points miniml at any other MLflow store (a
tracking server, PostgreSQL, ...). Opening a SQL store runs MLflow's schema check (alembic) which costs
about a second, so each process builds one client per tracking URI and reuses it.

Every call uses explicit run ids on an ``MlflowClient``, never MLflow's process-global active run, so
several trackers (or threads) in one process do not step on each other.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import miniml.paths as paths
from miniml.errors import RegistryError
from miniml.objectstore import S3Location, S3Store, store_error

# MLflow reports usage to a remote endpoint unless told not to; a local platform keeps quiet by default
# (a user who wants it sets MLFLOW_DISABLE_TELEMETRY=false).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Downloads show miniml's own spinner on a terminal; MLflow's tqdm bars would spam logs and pipes.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

T = TypeVar("T")
_QUIET_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.db", "alembic", "alembic.runtime.migration")
EMBEDDED_DB = "mlflow.db"
EMBEDDED_ARTIFACTS = "artifacts"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set and non-empty, else the embedded SQLite store under MINIML_HOME."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return uri or f"sqlite:///{paths.mlflow_dir() / EMBEDDED_DB}"


def embedded_artifact_root() -> Path:
    """Where the embedded store keeps run artifacts."""
    return paths.mlflow_dir() / EMBEDDED_ARTIFACTS


def is_embedded(uri: str) -> bool:
    """Whether ``uri`` is the embedded SQLite store of the current MINIML_HOME."""
    return uri == f"sqlite:///{paths.mlflow_dir() / EMBEDDED_DB}"


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifact location for a new experiment; None lets a tracking server decide.

    Direct database stores (SQLite, PostgreSQL, ...) have no server to pick one, and MLflow would fall back
    to ``./mlruns`` in whatever folder the command ran from, so miniml uses ``MINIML_ARTIFACT_ROOT`` (a
    folder or URI such as ``s3://bucket/mlflow``), by default ``MINIML_HOME/mlflow/artifacts``.
    """
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    root = os.environ.get("MINIML_ARTIFACT_ROOT", "").strip()
    base = (
        root
        if "://" in root
        else (Path(root).expanduser().resolve() if root else embedded_artifact_root()).as_uri()
    )
    return f"{base.rstrip('/')}/{_safe_dir_name(experiment)}"


def _safe_dir_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "default"


def quiet_mlflow() -> None:
    """Silence MLflow's start-up chatter and its multi-line SQL error dumps.

    miniml turns every store failure into one ``error:`` line; ``MINIML_DEBUG=1`` shows MLflow's logs again.
    """
    if os.environ.get("MINIML_DEBUG"):
        return
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """The MLflow client for ``tracking_uri`` (default: :func:`default_tracking_uri`), cached per URI."""
    return _client_for(tracking_uri or default_tracking_uri())


@functools.lru_cache(maxsize=16)
def _client_for(uri: str) -> MlflowClient:
    quiet_mlflow()
    with mlflow_errors(f"cannot open the MLflow tracking store {redact(uri)}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy deprecation notices from MLflow's own models
        if is_embedded(uri):
            _init_embedded_store(uri)
            from miniml.registry.relocate import follow_home

            follow_home(paths.mlflow_dir() / EMBEDDED_DB, paths.home())  # a moved or copied MINIML_HOME
        check_server(uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # fail here, with a clear line, if the store is unusable
    return client


def check_server(uri: str) -> None:
    """A tracking server that does not answer fails here in seconds, not after MLflow's minutes of retries."""
    if not uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=5)
    except httpx.TransportError as err:
        raise RegistryError(
            f"cannot reach the MLflow tracking server {redact(uri)} ({type(err).__name__})",
            hint="is the hub running? `miniml hub status` where it was started; check MLFLOW_TRACKING_URI",
        ) from None


def _init_embedded_store(uri: str) -> None:
    """Create the SQLite store with our artifact root, so even MLflow's Default experiment lives there."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    paths.mlflow_dir().mkdir(parents=True, exist_ok=True)
    embedded_artifact_root().mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, embedded_artifact_root().as_uri())


def redact(uri: str) -> str:
    """``uri`` without a password (``postgresql://user:secret@host`` → ``postgresql://user:***@host``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else uri


def error_code(err: MlflowException) -> str:
    return str(getattr(err, "error_code", ""))


def first_line(err: BaseException) -> str:
    """The informative first line of an error (SQLAlchemy puts a preamble before the real cause)."""
    text = str(getattr(err, "message", None) or err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("(raised as a result of")]
    return (useful or lines or [type(err).__name__])[0][:300]


@contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """Turn an MLflow (or database driver) failure into a one-line RegistryError that says what failed."""
    try:
        yield
    except MlflowException as err:
        raise RegistryError(f"{what}: {first_line(err)}", hint=_hint_for(err)) from None
    except (OSError, ImportError) as err:
        raise RegistryError(f"{what}: {first_line(err)}", hint="check MLFLOW_TRACKING_URI") from None
    except Exception as err:  # an S3 artifact store's failure (botocore) is one line too
        mapped = store_error(err, what, "the S3 artifact store")
        if mapped is None:
            raise
        raise mapped from None


def _hint_for(err: MlflowException) -> str | None:
    if error_code(err) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
        return "see `miniml models list`"
    return "check MLFLOW_TRACKING_URI and that the tracking store is reachable"


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one MLflow client call; a failure becomes a one-line RegistryError naming ``what``."""
    with mlflow_errors(what):
        return fn(*args, **kwargs)


@functools.lru_cache(maxsize=8)
def check_artifact_root(root: str) -> None:
    """Before any run starts: an ``s3://`` artifact root's bucket exists and takes our credentials.

    Without this a missing bucket or a wrong key would surface only when the trained model is uploaded.
    """
    if root.startswith("s3://"):
        S3Store(S3Location.parse(root).bucket).check()


def ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """Id of experiment ``name``, created (with the embedded artifact root when embedded) if missing."""
    location = artifact_location(uri, name)
    if location is not None:
        check_artifact_root(location)
    with mlflow_errors(f"cannot open MLflow experiment {name!r}"):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException as err:  # created by a concurrent writer between our two calls
            if error_code(err) != "RESOURCE_ALREADY_EXISTS":
                raise
            again = client.get_experiment_by_name(name)
            assert again is not None
            return str(again.experiment_id)

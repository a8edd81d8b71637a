"""A moved or copied ``MINIML_HOME``: the embedded MLflow store follows it instead of writing to the old one.

MLflow records absolute locations: each experiment's artifact location, each run's artifact URI, each
model version's source and each dataset input's source are ``file:///old/home/...`` strings in
``mlflow.db``. After ``cp -r`` or ``mv`` of the home, new runs would write their artifacts into the *old*
folder (or fail where it is gone) and registry downloads would read from it. So every time the embedded
store is opened, :func:`follow_home` compares the home recorded in the store (the tag ``miniml.home`` of
the Default experiment; for a store made before the tag existed, the home its Default experiment's
artifact location ``HOME/mlflow/artifacts/0`` implies) with the current home; if they differ, the old
home prefix is rewritten to the new one in those columns, in one SQLite transaction, the tag is updated
and a warning says so. Paths outside the old home (e.g. ``MINIML_ARTIFACT_ROOT`` elsewhere) are left
alone. Other stores (PostgreSQL, tracking servers) are not touched: their locations are shared.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from miniml.errors import RegistryError

log = logging.getLogger("miniml")

# (table, column) pairs holding absolute locations; tables a given MLflow schema lacks are skipped
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
    ("datasets", "dataset_source"),
)


HOME_TAG = "miniml.home"


def recorded_home(db: Path) -> Path | None:
    """The home the store at ``db`` last lived in, None if it cannot tell."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            tag = conn.execute(
                "SELECT value FROM experiment_tags WHERE experiment_id = 0 AND key = ?", (HOME_TAG,)
            ).fetchone()
            row = conn.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()
        except sqlite3.Error:
            return None
    if tag and tag[0]:
        return Path(tag[0])
    if not row or not str(row[0]).startswith("file://"):
        return None
    artifacts0 = Path(unquote(urlparse(str(row[0])).path))  # HOME/mlflow/artifacts/0
    if artifacts0.parts[-3:] != ("mlflow", "artifacts", "0"):
        return None
    return artifacts0.parents[2]


def follow_home(db: Path, home: Path) -> int:
    """Rewrite the store's locations from the home it last lived in to ``home``; returns rows changed."""
    old = recorded_home(db)
    if old == home:
        return 0
    changed = 0
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, 0)",
                (HOME_TAG, str(home)),
            )
            if old is None:  # first open by a miniml that records its home: nothing to follow
                return 0
            for table, column in LOCATION_COLUMNS:
                if column not in _columns(conn, table):
                    continue
                for before, after in _prefixes(old, home):
                    cursor = conn.execute(
                        f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                        f'WHERE substr("{column}", 1, ?) = ?',
                        (after, len(before) + 1, len(before), before),
                    )
                    changed += cursor.rowcount
    except sqlite3.Error as err:
        raise RegistryError(
            f"MINIML_HOME moved from {old} to {home}, and the MLflow store could not follow: {err}",
            hint=f"set MINIML_HOME={old}, or make {db} writable",
        ) from None
    log.warning(
        "MINIML_HOME moved from %s to %s: %d locations in the MLflow store now point into the new home",
        old,
        home,
        changed,
    )
    return changed


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def _prefixes(old: Path, new: Path) -> list[tuple[str, str]]:
    """The old home as MLflow writes it (file URI, with and without a trailing slash; plain path) → new."""
    return [
        (old.as_uri() + "/", new.as_uri() + "/"),
        (str(old) + "/", str(new) + "/"),
    ]

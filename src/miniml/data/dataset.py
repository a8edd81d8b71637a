"""A prepared dataset: an immutable, content-addressed folder of Parquet splits plus ``manifest.json``.

Layout::

    MINIML_HOME/datasets/NAME/FINGERPRINT/
        train.parquet  validation.parquet  test.parquet   # columns: input, target (+ extras)
        manifest.json

The fingerprint is a hash of the sources' sha256, the preparation config and the cleaning code version, so
the same inputs give the same folder. Folders are written once, atomically, and never modified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

import miniml.paths as paths
from miniml.data import hub
from miniml.data.manifest import MANIFEST, FileRecord, Manifest, SourceRecord, file_records
from miniml.errors import DataError
from miniml.io import atomic_dir, atomic_write_json

__all__ = [
    "MANIFEST",
    "SPLITS",
    "Dataset",
    "FileRecord",
    "Manifest",
    "SourceRecord",
    "fingerprint_of",
    "list_datasets",
    "make_manifest",
    "open_dataset",
    "store_dataset",
    "write_dataset",
]

SPLITS = ("train", "validation", "test")


def fingerprint_of(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-able object (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


class Dataset:
    """A prepared dataset folder, opened read-only; ``source_uri`` is the hub URI it was pulled from."""

    def __init__(self, path: Path, source_uri: str | None = None) -> None:
        self.path = Path(path)
        self.source_uri = source_uri
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(
                f"{self.path} is not a prepared dataset (no {MANIFEST})",
                hint="run `miniml data prepare CONFIG.yaml` and pass the folder it prints",
            )
        self.manifest = Manifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    def splits(self) -> list[str]:
        return [s for s in SPLITS if (self.path / f"{s}.parquet").is_file()]

    def split(self, name: str) -> pd.DataFrame:
        """Load one split; a missing or empty split is a DataError naming the splits that exist."""
        file = self.path / f"{name}.parquet"
        if not file.is_file():
            raise DataError(
                f"dataset {self.name} has no split {name!r}",
                hint=f"available: {', '.join(self.splits()) or 'none'}",
            )
        try:
            frame = pd.read_parquet(file)
        except Exception as err:  # pyarrow raises several types for an unreadable or truncated file
            raise DataError(
                f"cannot read split {name!r} of dataset {self.name} at {file}: {type(err).__name__}: {err}",
                hint="prepare or pull the dataset again (`miniml data prepare`, `miniml data pull`)",
            ) from None
        if frame.empty:
            raise DataError(f"split {name!r} of dataset {self.name} is empty", hint="prepare it again")
        return frame

    def labels(self) -> list[str]:
        """Sorted label set over all splits (classification datasets)."""
        seen: set[str] = set()
        for counts in self.manifest.label_counts.values():
            seen.update(counts)
        return sorted(seen)

    def __repr__(self) -> str:
        return f"Dataset({self.name}/{self.fingerprint} at {self.path})"


def open_dataset(ref: str | Path) -> Dataset:
    """Open a dataset by folder path, ``NAME/FINGERPRINT``, ``NAME`` (the most recently prepared) or
    ``s3://BUCKET/PREFIX/NAME/FINGERPRINT`` (pulled from the dataset hub once, then read locally)."""
    if hub.is_remote(ref):
        return Dataset(hub.pull(str(ref)).path, source_uri=str(ref).rstrip("/"))
    candidate = Path(ref).expanduser()
    if (candidate / MANIFEST).is_file():
        return Dataset(candidate)
    root = paths.datasets_dir()
    text = str(ref)
    if "/" in text.strip("/"):
        name, _, fp = text.strip("/").partition("/")
        folder = root / name / fp
        if (folder / MANIFEST).is_file():
            return Dataset(folder)
    else:
        folder = root / text
        versions = sorted(
            (p for p in folder.glob("*") if (p / MANIFEST).is_file()),
            key=lambda p: (p / MANIFEST).stat().st_mtime,
        )
        if versions:
            return Dataset(versions[-1])
    raise DataError(
        f"no prepared dataset {text!r} (looked for a folder and under {root})",
        hint="run `miniml data prepare CONFIG.yaml` first, or pass the folder it printed",
    )


def list_datasets() -> list[Dataset]:
    """Every dataset under ``MINIML_HOME/datasets``, by name then creation time."""
    found = [Dataset(m.parent) for m in paths.datasets_dir().glob(f"*/*/{MANIFEST}")]
    return sorted(found, key=lambda d: (d.name, d.manifest.created_at))


def label_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per target value, for classification-style targets; empty for free-text targets."""
    if "target" not in frame or frame.empty:
        return {}
    counts = frame["target"].astype(str).value_counts()
    if len(counts) > 200:  # free-text targets (seq2seq): counting them is noise
        return {}
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _has_labels(splits: Mapping[str, pd.DataFrame]) -> bool:
    """Whether targets look like class labels over the whole dataset (not free text such as SQL)."""
    distinct: set[str] = set()
    for frame in splits.values():
        if "target" in frame:
            distinct.update(frame["target"].astype(str).unique())
        if len(distinct) > 200:
            return False
    return True


def write_dataset(
    name: str,
    fingerprint: str,
    splits: dict[str, pd.DataFrame],
    *,
    config: dict[str, Any] | None = None,
    sources: list[SourceRecord] | None = None,
    dropped: dict[str, int] | None = None,
    cleaning_version: str = "",
    root: Path | None = None,
) -> Dataset:
    """Write splits + manifest atomically to ``root/NAME/FINGERPRINT`` (default under MINIML_HOME).

    If that folder already exists it is returned as is: same fingerprint, same contents.
    """
    check_splits(splits)
    manifest = make_manifest(
        name,
        fingerprint,
        splits,
        columns=list(next(iter(splits.values())).columns) if splits else ["input", "target"],
        config=config,
        sources=sources,
        dropped=dropped,
        cleaning_version=cleaning_version,
    )
    writers = {split: _parquet_writer(frame) for split, frame in splits.items()}
    return store_dataset(manifest, writers, root=root)


def check_splits(splits: Mapping[str, pd.DataFrame]) -> None:
    """Known split names, each with ``input`` and ``target`` columns."""
    for split, frame in splits.items():
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        missing = {"input", "target"} - set(frame.columns)
        if missing:
            raise DataError(f"split {split!r} lacks column(s) {sorted(missing)}")


def make_manifest(
    name: str,
    fingerprint: str,
    targets: Mapping[str, pd.DataFrame],
    *,
    columns: list[str],
    config: dict[str, Any] | None = None,
    sources: list[SourceRecord] | None = None,
    dropped: dict[str, int] | None = None,
    cleaning_version: str = "",
) -> Manifest:
    """The manifest of a dataset whose splits have these rows (only their ``target`` column is read)."""
    from miniml.version import __version__

    return Manifest(
        name=name,
        fingerprint=fingerprint,
        miniml_version=__version__,
        cleaning_version=cleaning_version,
        config=config or {},
        sources=sources or [],
        columns=columns,
        counts={s: len(f) for s, f in targets.items()},
        label_counts={s: label_counts(f) for s, f in targets.items()} if _has_labels(targets) else {},
        dropped=dropped or {},
    )


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.reset_index(drop=True).to_parquet(path, index=False)


def store_dataset(
    manifest: Manifest, writers: Mapping[str, Callable[[Path], None]], *, root: Path | None = None
) -> Dataset:
    """Write each split with its writer (``writer(path)``), then the manifest, into one atomic folder.

    An existing folder with the same fingerprint is returned as it is.
    """
    final = (root or paths.datasets_dir()) / manifest.name / manifest.fingerprint
    if (final / MANIFEST).is_file():
        return Dataset(final)
    with atomic_dir(final) as tmp:
        for split, write in writers.items():
            write(tmp / f"{split}.parquet")
        manifest.files = file_records(tmp)
        atomic_write_json(tmp / MANIFEST, manifest.model_dump(mode="json"))
    return Dataset(final)

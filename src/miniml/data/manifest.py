"""``manifest.json``: what a prepared dataset holds, where it came from, and every file's sha256.

The manifest is written last into a dataset folder. ``files`` lists each data file with its size and
sha256 so a copy of the folder (from the dataset hub, a backup, another machine) can be verified file by
file; manifests written before it existed have an empty ``files`` and :func:`file_records` fills it in.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

MANIFEST = "manifest.json"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a plain file name: no folders, no dotfiles


class SourceRecord(BaseModel):
    """Where some rows came from: a catalog URL or a local path, with its sha256."""

    uri: str
    sha256: str
    bytes: int | None = None
    license: str | None = None
    rows: int | None = None


class FileRecord(BaseModel):
    """One data file of the dataset folder: its size and sha256."""

    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """What ``manifest.json`` holds; enough to reproduce, audit and verify the dataset."""

    name: str
    fingerprint: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    miniml_version: str = ""
    cleaning_version: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    sources: list[SourceRecord] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=lambda: ["input", "target"])
    counts: dict[str, int] = Field(default_factory=dict)
    label_counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    dropped: dict[str, int] = Field(default_factory=dict)
    files: dict[str, FileRecord] = Field(default_factory=dict)

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, FileRecord]) -> dict[str, FileRecord]:
        bad = [name for name in files if not _FILE_NAME.match(name) or name == MANIFEST]
        if bad:
            raise ValueError(f"files must be plain file names inside the dataset folder, not {bad[:3]}")
        return files


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_records(folder: Path) -> dict[str, FileRecord]:
    """Size and sha256 of every data file directly in ``folder`` (the manifest itself excluded)."""
    return {
        p.name: FileRecord(bytes=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.name != MANIFEST and _FILE_NAME.match(p.name)
    }

"""The catalog: named public datasets, each a list of files by pinned URL, sha256, size and license.

The facts live in ``catalog.json`` next to this module (package data); the files themselves are fetched on
demand into the content-addressed cache by :mod:`miniml.data.fetch`.
"""

from __future__ import annotations

import fnmatch
import json
from functools import cache
from importlib import resources
from posixpath import basename
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import DataError


class CatalogFile(BaseModel):
    """One file of a catalog dataset: where it lives and what its bytes must hash to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https://")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    license: str = ""

    @property
    def name(self) -> str:
        """The file's base name (``da_ddt-ud-dev.conllu``), used to pick files in prepare configs."""
        return basename(urlsplit(self.url).path)


@cache
def _load() -> dict[str, tuple[CatalogFile, ...]]:
    text = resources.files("miniml.data").joinpath("catalog.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return {name: tuple(CatalogFile.model_validate(f) for f in files) for name, files in raw.items()}


def load_catalog() -> dict[str, list[CatalogFile]]:
    """Every catalog dataset by name, its files in catalog order."""
    return {name: list(files) for name, files in _load().items()}


def dataset_files(name: str) -> list[CatalogFile]:
    """The files of catalog dataset ``name``; an unknown name is a DataError listing the known ones."""
    catalog = _load()
    if name not in catalog:
        raise DataError(
            f"unknown catalog dataset {name!r}",
            hint=f"known: {', '.join(sorted(catalog))}",
        )
    return list(catalog[name])


def select_files(name: str, patterns: list[str] | None) -> list[CatalogFile]:
    """Files of ``name`` whose base name matches any glob in ``patterns`` (all files when None)."""
    files = dataset_files(name)
    if patterns is None:
        return files
    chosen = [f for f in files if any(fnmatch.fnmatchcase(f.name, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(f.name, p) for f in files)]
    if unmatched:
        raise DataError(
            f"catalog dataset {name!r} has no file matching {', '.join(map(repr, unmatched))}",
            hint=f"its files: {', '.join(f.name for f in files)}",
        )
    return chosen

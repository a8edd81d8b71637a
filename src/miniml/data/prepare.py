"""``miniml data prepare``: sources → cleaned, de-duplicated, split, immutable dataset folder.

Reads top to bottom: resolve the sources (names + sha256) → fingerprint → stop if already prepared → fetch
→ read and map every source → clean → de-duplicate → hard negatives and pairs (embedding data) → cap
sources and classes → split → de-duplicate across splits → write ``MINIML_HOME/datasets/NAME/FINGERPRINT/``
atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field, field_validator

import miniml.paths as paths
from miniml.compute import BackendConfig
from miniml.config import StepConfig
from miniml.data.clean import CLEANING_VERSION, CleanConfig, Dropped, clean_rows, cross_split_dedup, dedup
from miniml.data.dataset import MANIFEST, SPLITS, Dataset, SourceRecord, fingerprint_of, write_dataset
from miniml.data.mapping import require_columns
from miniml.data.pairs import NegativesConfig, PairsConfig, add_negatives, make_pairs
from miniml.data.sources import Resolved, SourceConfig, load, materialize, resolve
from miniml.data.split import SplitConfig, assign_splits, cap_classes, cap_sources
from miniml.errors import DataError


class PrepareConfig(StepConfig):
    """The ``data prepare`` step: a dataset name, its sources, cleaning and split options."""

    env_section: ClassVar[str] = "data"

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="dataset name (folder under datasets/)")
    sources: list[SourceConfig] = Field(min_length=1)
    clean: CleanConfig = Field(default_factory=lambda: CleanConfig.model_validate({}))
    split: SplitConfig = Field(default_factory=lambda: SplitConfig.model_validate({}))
    negatives: NegativesConfig | None = Field(
        None, description="a hard negative per row (embedding data): see miniml.data.pairs"
    )
    pairs: PairsConfig | None = Field(
        None, description="turn rows that mean the same into (input, target) pairs (embedding data)"
    )
    base_dir: Path | None = Field(
        None, description="folder local paths are relative to (default: the config's)"
    )
    backend: BackendConfig = Field(
        default_factory=lambda: BackendConfig.model_validate({}), description="where the work runs"
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _no_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and any(v is None for v in value):
            raise ValueError("a source entry is empty")
        return value

    def identity(self) -> dict[str, Any]:
        """The config as it enters the fingerprint and the manifest (without machine-specific paths, and
        without the backend: every backend prepares the same dataset).

        Keys added later are left out while they hold their defaults, so older datasets keep their
        fingerprints."""
        data = self.model_dump(mode="json", exclude={"base_dir", "backend"})
        for key in ("negatives", "pairs"):
            if data[key] is None:
                del data[key]
        if not data["split"]["group_by"]:
            del data["split"]["group_by"]
        return data


@dataclass
class Plan:
    """What a prepare will build: resolved sources, fingerprint and target folder."""

    config: PrepareConfig
    sources: list[Resolved]
    fingerprint: str
    path: Path

    @property
    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()


@dataclass
class _Collected:
    rows: pd.DataFrame
    dropped: Dropped = field(default_factory=dict)
    records: list[SourceRecord] = field(default_factory=list)


def plan(config: PrepareConfig) -> Plan:
    """Resolve sources and compute the fingerprint without reading any data."""
    base = config.base_dir or Path.cwd()
    sources = [resolve(s, i, base) for i, s in enumerate(config.sources)]
    fingerprint = fingerprint_of(
        {
            "config": config.identity(),
            "sources": [[f.sha256 for f in s.all_files] for s in sources],
            "cleaning_version": CLEANING_VERSION,
        }
    )
    return Plan(config, sources, fingerprint, paths.datasets_dir() / config.name / fingerprint)


def prepare(config: PrepareConfig, *, mirror: str | None = None) -> Dataset:
    """Build the dataset ``config`` describes, or return it unchanged if it was already prepared."""
    return build(plan(config), mirror=mirror)


def build(the_plan: Plan, *, mirror: str | None = None) -> Dataset:
    """Run a plan: fetch, read, clean, split and write (skipped when the folder exists)."""
    if the_plan.exists:
        return Dataset(the_plan.path)
    config = the_plan.config
    collected = _collect(the_plan.sources, materialize(the_plan.sources, mirror))
    rows, dropped = collected.rows, dict(collected.dropped)
    rows = apply_drops(rows, dropped, clean_rows(rows, config.clean))
    if config.clean.dedup:
        require_columns(rows, config.clean.dedup_on, "clean.dedup_on")
        rows = apply_drops(rows, dropped, dedup(rows, config.clean.dedup_on))
    if config.negatives is not None:
        rows = add_negatives(rows, config.negatives, config.split.seed)
    if config.pairs is not None:
        rows = apply_drops(rows, dropped, make_pairs(rows, config.pairs))
    caps = {i: s.max_rows for i, s in enumerate(config.sources) if s.max_rows is not None}
    rows = apply_drops(rows, dropped, cap_sources(rows, caps, config.split.seed))
    rows = apply_drops(rows, dropped, cap_classes(rows, config.split))
    names = assign_splits(rows, config.split)
    hidden = ["_split", "_source"]
    splits = {s: rows[names == s].drop(columns=hidden).reset_index(drop=True) for s in SPLITS}
    splits = {s: f for s, f in splits.items() if len(f)}
    if config.clean.cross_split_dedup:
        require_columns(rows, config.clean.dedup_on, "clean.dedup_on")
        splits, more = cross_split_dedup(splits, config.clean.dedup_on)
        add_counts(dropped, more)
    check_not_empty(splits, dropped, config)
    return write_dataset(
        config.name,
        the_plan.fingerprint,
        splits,
        config=config.identity(),
        sources=collected.records,
        dropped=dropped,
        cleaning_version=CLEANING_VERSION,
    )


def _collect(sources: list[Resolved], found: dict[str, Path]) -> _Collected:
    """Read and map every source; concatenate them, filling extras a source lacks with empty text."""
    frames, out = [], _Collected(pd.DataFrame())
    for source in sources:
        frame, dropped, rows = load(source, found)
        frames.append(frame.assign(_source=source.index))
        add_counts(out.dropped, dropped)
        out.records += [
            SourceRecord(uri=f.uri, sha256=f.sha256, bytes=f.bytes, license=f.license or None, rows=n)
            for f, n in zip(source.files, rows, strict=True)
        ]
        out.records += [SourceRecord(uri=f.uri, sha256=f.sha256, bytes=f.bytes) for f in source.join_files]
    rows = pd.concat(frames, ignore_index=True)
    for column in rows.columns:
        missing = rows[column].isna()
        if column not in ("_split", "_source") and missing.any():
            is_list = any(isinstance(v, list) for v in rows[column][~missing])
            fill = pd.Series(
                [[] if is_list else ""] * int(missing.sum()), index=rows.index[missing], dtype=object
            )
            rows[column] = rows[column].astype(object).where(~missing, fill)
    out.rows = rows
    return out


def read_units(sources: list[Resolved]) -> list[Resolved]:
    """The sources cut into independent reads: one per file, or the whole source when a join or a collect
    spans its files. Reading them in order and concatenating gives the rows :func:`build` reads."""
    out: list[Resolved] = []
    for source in sources:
        if source.config.join is not None or source.config.collect:
            out.append(source)
        else:
            out += [replace(source, files=[f]) for f in source.files]
    return out


def read_and_clean(
    unit: Resolved, found: dict[str, Path], clean: CleanConfig
) -> tuple[pd.DataFrame, Dropped, list[SourceRecord]]:
    """Read, map and clean one unit of :func:`read_units` (cleaning is row by row, so this equals cleaning
    the concatenation); returns its rows (with ``_source``), what was dropped, and its source records."""
    collected = _collect([unit], found)
    rows, dropped = collected.rows, dict(collected.dropped)
    rows = apply_drops(rows, dropped, clean_rows(rows, clean))
    return rows.reset_index(drop=True), dropped, collected.records


def apply_drops(rows: pd.DataFrame, dropped: Dropped, result: tuple[pd.DataFrame, Dropped]) -> pd.DataFrame:
    frame, more = result
    add_counts(dropped, more)
    return frame


def add_counts(total: Dropped, more: Dropped) -> None:
    for reason, count in more.items():
        total[reason] = total.get(reason, 0) + count


def check_not_empty(splits: dict[str, pd.DataFrame], dropped: Dropped, config: PrepareConfig) -> None:
    """No train rows is an error, unless every source sends its rows elsewhere (an evaluation-only set)."""
    by_fractions = config.split.train > 0 and any(s.split is None for s in config.sources)
    wants_train = by_fractions or any(s.split == "train" for s in config.sources)
    if "train" in splits or (splits and not wants_train):
        return
    why = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "nothing dropped"
    left = ", ".join(f"{k} {len(v)}" for k, v in splits.items()) or "no rows at all"
    raise DataError(
        f"no training rows left after cleaning ({left}; dropped: {why})",
        hint="loosen clean.min_chars / clean.max_chars, check the sources, or give some rows to train",
    )

"""Splits and class caps: rows without a source split go to train / validation / test by fractions,
stratified over chosen columns, reproducibly from a seed.

Hand-written rather than scikit-learn's ``train_test_split``: that one cannot take zero fractions, fails
on classes with a single row, and needs two calls for three splits; the version here is one seeded
permutation per stratum, cut at rounded cumulative fractions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from miniml.data.clean import Dropped
from miniml.data.dataset import SPLITS
from miniml.data.mapping import require_columns


class SplitConfig(BaseModel):
    """Fractions for rows without a source split, the seed, stratification and per-class caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: int = 13
    stratify: list[str] = Field(
        default_factory=lambda: ["target"], description="columns to stratify on; [] for a plain random split"
    )
    max_per_class: int | dict[str, int] | None = Field(
        None, description="cap rows per target (one number for all, or per label); extra rows are dropped"
    )
    balance: bool = Field(False, description="downsample every class to the size of the smallest")
    group_by: list[str] = Field(
        default_factory=list, description="rows sharing these columns go to the same split (e.g. [group])"
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        caps = self.max_per_class
        values = caps.values() if isinstance(caps, dict) else [caps] if caps is not None else []
        if any(v < 1 for v in values):
            raise ValueError("max_per_class values must be at least 1")
        return self

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def cap_classes(frame: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, Dropped]:
    """Apply ``max_per_class`` and ``balance`` by a seeded random sample per class (order kept)."""
    if config.max_per_class is None and not config.balance:
        return frame, {}
    counts = frame["target"].value_counts()
    caps = {label: int(n) for label, n in counts.items()}
    if isinstance(config.max_per_class, int):
        caps = {k: min(v, config.max_per_class) for k, v in caps.items()}
    elif isinstance(config.max_per_class, dict):
        caps = {k: min(v, config.max_per_class.get(k, v)) for k, v in caps.items()}
    dropped: Dropped = {}
    rng = np.random.default_rng(config.seed)
    keep = np.ones(len(frame), dtype=bool)
    target = frame["target"].to_numpy()
    smallest = min(caps.values()) if caps else 0
    for label in sorted(caps):
        rows = np.flatnonzero(target == label)
        limit = min(caps[label], smallest) if config.balance else caps[label]
        if len(rows) <= limit:
            continue
        reason = "class_cap" if limit == caps[label] else "balance"
        dropped[reason] = dropped.get(reason, 0) + len(rows) - limit
        keep[rng.choice(rows, size=len(rows) - limit, replace=False)] = False
    return frame[keep], dropped


def cap_sources(frame: pd.DataFrame, caps: dict[int, int], seed: int) -> tuple[pd.DataFrame, Dropped]:
    """Keep at most ``caps[i]`` rows of source ``i`` (column ``_source``): a seeded sample, order kept.

    So one large source (26,000 news sentences of one label) does not drown the others of its label.
    """
    if not caps:
        return frame, {}
    rng = np.random.default_rng(seed)
    keep = np.ones(len(frame), dtype=bool)
    source = frame["_source"].to_numpy()
    count = 0
    for index in sorted(caps):
        rows = np.flatnonzero(source == index)
        if len(rows) > caps[index]:
            keep[rng.choice(rows, size=len(rows) - caps[index], replace=False)] = False
            count += len(rows) - caps[index]
    return frame[keep], ({"source_cap": count} if count else {})


def assign_splits(frame: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """Split name per row: the row's fixed ``_split`` if it has one, else drawn by fractions per stratum."""
    fixed = frame["_split"] if "_split" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    out = fixed.astype(object).copy()
    free = frame[fixed.isna()]
    if free.empty:
        return out
    require_columns(free, config.stratify, "split.stratify")
    require_columns(free, config.group_by, "split.group_by")
    units = free  # what is drawn: rows, or one row per group (its first) with group_by
    if config.group_by:
        groups = free[config.group_by].astype(str).agg("\0".join, axis=1)
        units = free[~groups.duplicated()]
    rng = np.random.default_rng(config.seed)
    strata: dict[object, np.ndarray] = (
        dict(units.groupby(config.stratify, sort=True, dropna=False).indices)
        if config.stratify
        else {"": np.arange(len(units))}
    )
    for key in sorted(strata, key=str):
        order = rng.permutation(strata[key])
        for name, part in zip(SPLITS, _cut(order, config.fractions()), strict=True):
            out.loc[units.index[part]] = name
    if config.group_by:  # every row follows its group's first row
        first = pd.Series(out.loc[units.index].to_numpy(), index=groups.loc[units.index].to_numpy())
        out.loc[free.index] = groups.map(first).to_numpy()
    return out


def _cut(order: np.ndarray, fractions: dict[str, float]) -> list[np.ndarray]:
    """Cut a permutation into train / validation / test at rounded cumulative fractions."""
    n = len(order)
    first = math.floor(n * fractions["train"] + 0.5)
    second = math.floor(n * (fractions["train"] + fractions["validation"]) + 0.5)
    return [order[:first], order[first:second], order[second:]]

"""Cleaning rules: Unicode and whitespace normalisation, optional lower-casing, empty / length filters,
exact de-duplication and de-duplication across splits. Every dropped row is counted under a reason.

``CLEANING_VERSION`` is part of every dataset fingerprint: bump it whenever a rule's behaviour changes, so
datasets prepared by the old rules are not mistaken for new ones.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from miniml.data.dataset import SPLITS

CLEANING_VERSION = "1"

Dropped = dict[str, int]


class CleanConfig(BaseModel):
    """How texts are normalised and which rows are dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unicode: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode normal form of input/target")
    whitespace: Literal["collapse", "lines", "keep"] = Field(
        "collapse", description="collapse: all runs → one space; lines: keep line breaks, tidy each line"
    )
    lowercase: bool = Field(False, description="lower-case the input (never the target)")
    min_chars: int = Field(1, ge=1, description="drop inputs shorter than this (after normalisation)")
    max_chars: int | None = Field(None, ge=1, description="drop inputs longer than this")
    dedup: bool = Field(True, description="drop exact duplicates (by dedup_on) within each split")
    cross_split_dedup: bool = Field(True, description="drop rows whose key appears in a later split")
    dedup_on: list[str] = Field(default_factory=lambda: ["input"], min_length=1)

    @model_validator(mode="after")
    def _bounds(self) -> CleanConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


def normalize(texts: pd.Series, config: CleanConfig, *, lowercase: bool = False) -> pd.Series:
    """Apply the Unicode form, the whitespace rule and (if asked) lower-casing to a column of strings."""
    # Plain list comprehensions over C string methods: several times faster than pandas' .str accessor.
    values: list[str] = texts.tolist()
    form = config.unicode
    if form != "none":
        values = [v if unicodedata.is_normalized(form, v) else unicodedata.normalize(form, v) for v in values]
    if config.whitespace == "collapse":  # str.split() splits on every Unicode whitespace character
        values = [" ".join(v.split()) for v in values]
    elif config.whitespace == "lines":
        values = [
            "\n".join(" ".join(line.split()) for line in v.splitlines() if not line.isspace() and line)
            for v in values
        ]
    if lowercase:
        values = [v.lower() for v in values]
    return pd.Series(values, index=texts.index, dtype=object)


def _normalize_extra(column: pd.Series, config: CleanConfig) -> pd.Series:
    """Normalise an extra column of strings, or of lists of strings (e.g. reference summaries)."""
    if all(isinstance(v, str) for v in column):
        return normalize(column, config)
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in column):
        return column
    flat = normalize(pd.Series([x for v in column for x in v], dtype=object), config).tolist()
    out, start = [], 0
    for value in column:
        out.append(flat[start : start + len(value)])
        start += len(value)
    return pd.Series(out, index=column.index, dtype=object)


def clean_rows(frame: pd.DataFrame, config: CleanConfig) -> tuple[pd.DataFrame, Dropped]:
    """Normalise input and target, then drop empty, too short and too long rows (counted by reason)."""
    frame = frame.copy()
    frame["input"] = normalize(frame["input"], config, lowercase=config.lowercase)
    frame["target"] = normalize(frame["target"], config)
    for column in frame.columns.difference(["input", "target", "_split", "_source"]):
        frame[column] = _normalize_extra(frame[column], config)
    length = frame["input"].str.len()
    rules = {
        "empty_input": length == 0,
        "empty_target": frame["target"].str.len() == 0,
        "too_short": length < config.min_chars,
        "too_long": length > (config.max_chars or float("inf")),
    }
    return drop_by_reason(frame, rules)


def drop_by_reason(frame: pd.DataFrame, rules: dict[str, pd.Series]) -> tuple[pd.DataFrame, Dropped]:
    """Drop rows matched by the rules; each row counts once, under the first rule that matched it."""
    gone = pd.Series(False, index=frame.index)
    dropped: Dropped = {}
    for reason, mask in rules.items():
        fresh = mask & ~gone
        if fresh.any():
            dropped[reason] = int(fresh.sum())
        gone |= fresh
    return frame[~gone], dropped


def dedup(frame: pd.DataFrame, on: list[str], group: str = "_split") -> tuple[pd.DataFrame, Dropped]:
    """Drop exact duplicates of ``on`` within each ``group`` value (unassigned rows are one group)."""
    dupes = frame.duplicated(subset=[group, *on] if group in frame.columns else on)
    return frame[~dupes], ({"duplicate": int(dupes.sum())} if dupes.any() else {})


def cross_split_dedup(
    splits: dict[str, pd.DataFrame], on: list[str]
) -> tuple[dict[str, pd.DataFrame], Dropped]:
    """Drop from each split the rows whose key is in a split that outranks it (test > validation > train).

    So no test text appears in validation or train, and no validation text in train.
    """
    seen: set[tuple[object, ...]] = set()
    out: dict[str, pd.DataFrame] = {}
    count = 0
    for name in reversed(SPLITS):
        if name not in splits:
            continue
        frame = splits[name]
        keys = list(frame[on].itertuples(index=False, name=None))
        clash = pd.Series([k in seen for k in keys], index=frame.index, dtype=bool)
        count += int(clash.sum())
        out[name] = frame[~clash]
        seen.update(keys)
    return {n: out[n] for n in SPLITS if n in out}, ({"cross_split_duplicate": count} if count else {})

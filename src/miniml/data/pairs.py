"""Embedding training data: pairs of rows that mean the same, and hard negatives.

``negatives: {by: [table], differ: [target], text: target}`` gives every row a ``negative`` column: the
``text`` of another row that shares the ``by`` columns but differs on ``differ`` (WikiSQL: the SQL of another
question about the same table), drawn with the split seed; '' when there is none. An embedding model trained
with it learns that a value changes the meaning ("... of Terrence Ross" is not "... of Kyle Lowry").

``pairs: {by: [table, target]}`` groups the rows by the ``by`` columns (WikiSQL: questions about the same
table with the same SQL are paraphrases) and turns each group of distinct texts ``t0, t1, ..., tn`` of the
``text`` column into the pairs ``(t0, t1), (t1, t2), ...`` (at most ``max_per_group``) as ``input`` and
``target``; rows without a partner are dropped (``unpaired``). Each pair keeps the other columns of its first
row (its ``negative`` too: set ``negatives.text`` to the paired column) and a ``group`` column naming its
group, so the split can keep a group's pairs together (``split.group_by: [group]``). Pairs take no fixed
split from their sources: a group may gather rows of several sources.

Both run after cleaning and de-duplication, negatives first (they are drawn from every row, paired or not).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from miniml.data.clean import Dropped
from miniml.data.mapping import require_columns

GROUP = "group"
NEGATIVE = "negative"


class PairsConfig(BaseModel):
    """How rows become pairs (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: list[str] = Field(min_length=1, description="rows sharing these columns mean the same")
    text: str = Field("input", description="the column paired (input and target both come from it)")
    max_per_group: int = Field(4, ge=1, le=1000, description="pairs per group at most")
    casefold: bool = Field(True, description="texts and group keys equal ignoring case are equal")


def _distinct(texts: list[str], casefold: bool) -> list[str]:
    seen: set[str] = set()
    out = []
    for text in texts:
        key = text.casefold() if casefold else text
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out


def make_pairs(rows: pd.DataFrame, config: PairsConfig) -> tuple[pd.DataFrame, Dropped]:
    """The pairs of ``rows`` and how many rows had no partner (see the module docstring)."""
    require_columns(rows, [*config.by, config.text], "pairs")
    keys = rows[config.by].astype(str).agg(" | ".join, axis=1)
    if config.casefold:
        keys = keys.str.casefold()
    texts = rows[config.text].astype(str)
    out: list[dict[str, object]] = []
    unpaired = 0
    for key, index in keys.groupby(keys, sort=False).groups.items():
        group = _distinct(texts.loc[index].tolist(), config.casefold)
        if len(group) < 2:
            unpaired += len(index)
            continue
        first = rows.loc[index[0]].to_dict()
        for a, b in list(itertools.pairwise(group))[: config.max_per_group]:
            out.append({**first, "input": a, "target": b, GROUP: key, "_split": None})
    pairs = pd.DataFrame(out, columns=[*rows.columns, GROUP] if not out else None)
    return pairs.reset_index(drop=True), ({"unpaired": unpaired} if unpaired else {})


class NegativesConfig(BaseModel):
    """A hard negative per row: the ``text`` of another row that shares ``by`` but differs on ``differ``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: list[str] = Field(min_length=1, description="candidates share these columns (e.g. [table])")
    differ: list[str] = Field(
        default_factory=lambda: ["target"], min_length=1, description="...and differ on these (another SQL)"
    )
    text: str = Field("target", description="the column whose text becomes the negative")


def add_negatives(rows: pd.DataFrame, config: NegativesConfig, seed: int) -> pd.DataFrame:
    """``rows`` with a ``negative`` column: a seeded pick among the candidates ('' when there is none)."""
    require_columns(rows, [*config.by, *config.differ, config.text], "negatives")
    rng = np.random.default_rng(seed)
    near = rows[config.by].astype(str).agg(" | ".join, axis=1)
    other = rows[config.differ].astype(str).agg(" | ".join, axis=1).str.casefold()
    texts = rows[config.text].astype(str)
    pool: dict[str, list[tuple[str, str]]] = {}
    for n, k, t in zip(near, other, texts, strict=True):
        pool.setdefault(n, []).append((k, t))
    out = []
    for n, k in zip(near, other, strict=True):
        options = [t for key, t in pool[n] if key != k]
        out.append(options[int(rng.integers(len(options)))] if options else "")
    return rows.assign(**{NEGATIVE: out})

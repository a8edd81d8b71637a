"""What a model folder records about the dataset it was trained on (``miniml.json`` ``dataset``).

Training stores these facts in the folder so its model card (:mod:`miniml.modelcard`) can say where the data
came from and what each label was trained on, without the dataset at hand: name, fingerprint, rows per
split and per label, every source with its license, and the *composition* of each label by the dataset's
small categorical extra columns (e.g. nordic-langid's ``other`` label by ``lang``: is, fo, pl, en, ...).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from miniml.data.dataset import Dataset

MAX_DISTINCT = 50  # more distinct values: free text (a table id, a question), not a kind of row
MAX_VALUES = 15  # values listed per label; the rest are summed up as "(other)"


def dataset_facts(dataset: Dataset, *, split: str = "test") -> dict[str, Any]:
    """Name, fingerprint, evaluation ``split``, rows, label counts, sources and composition of ``dataset``."""
    manifest = dataset.manifest
    facts: dict[str, Any] = {"name": manifest.name, "fingerprint": manifest.fingerprint, "split": split}
    if dataset.source_uri:
        facts["uri"] = dataset.source_uri
    facts["rows"] = dict(manifest.counts)
    if manifest.label_counts:
        facts["label_counts"] = {s: dict(c) for s, c in manifest.label_counts.items()}
    facts["sources"] = [
        {k: v for k, v in {"uri": s.uri, "license": s.license, "rows": s.rows}.items() if v is not None}
        for s in manifest.sources
    ]
    if "train" in dataset.splits():
        train = pd.read_parquet(dataset.path / "train.parquet")
        comp = composition(train, by_label=bool(manifest.label_counts))
        if comp:
            facts["composition"] = comp
    return facts


def composition(frame: pd.DataFrame, *, by_label: bool) -> dict[str, dict[str, dict[str, int]]]:
    """Column → label (``*`` for all rows) → value → rows, for each small categorical extra column."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for column in frame.columns:
        if column in ("input", "target"):
            continue
        values = frame[column]
        if not values.map(lambda v: isinstance(v, str)).all():
            continue  # lists, numbers, missing values: not a category
        distinct = values.nunique()
        if distinct < 2 or distinct > MAX_DISTINCT:
            continue
        groups = values.groupby(frame["target"].astype(str)) if by_label else [("*", values)]
        out[str(column)] = {str(label): top_values(group) for label, group in groups}
    return out


def top_values(values: pd.Series) -> dict[str, int]:
    """The most frequent values with their counts; the rest summed as ``(other)``."""
    counts = values.value_counts()
    top = {str(k): int(v) for k, v in counts.head(MAX_VALUES).items()}
    rest = int(counts.iloc[MAX_VALUES:].sum())
    if rest:
        top["(other)"] = rest
    return top

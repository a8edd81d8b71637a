"""``miniml data prepare --backend ray``: the same dataset as the local path, read and cleaned in parallel.

Reads top to bottom:

1. fetch the catalog files (sha256-verified, as locally) and cut the sources into read units, one per file
   (:func:`miniml.data.prepare.read_units`);
2. one Ray task per unit reads, maps and cleans its rows (:func:`~miniml.data.prepare.read_and_clean`); the
   rows stay in Ray's object store, only counts come back;
3. Ray Data projects every row to its decision keys (source, fixed split, target, stratification columns
   and a 128-bit hash of the ``dedup_on`` values) and hands this narrow table to the driver, which runs the
   local path's own de-duplication, caps, seeded split and cross-split de-duplication on it: the same rows
   in the same order give the same decisions;
4. Ray Data tags each row with its split and the driver streams each split into its Parquet file, then
   writes the manifest (same fingerprint: it is computed from the config and the sources before any
   reading).

No process holds the dataset whole: the driver sees the narrow table and one batch at a time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miniml.backends.ray.cluster import import_ray, ray_cluster
from miniml.backends.ray.failures import explain
from miniml.compute import BackendConfig
from miniml.data.clean import CLEANING_VERSION, CleanConfig, Dropped, cross_split_dedup, dedup
from miniml.data.dataset import SPLITS, Dataset, SourceRecord, make_manifest, store_dataset
from miniml.data.mapping import require_columns
from miniml.data.prepare import Plan, add_counts, apply_drops, check_not_empty, read_and_clean, read_units
from miniml.data.sources import Resolved, materialize
from miniml.data.split import assign_splits, cap_classes, cap_sources
from miniml.errors import ConfigError, MinimlError

HIDDEN = ("_split", "_source", "_unit", "_row")
KEY = "_key"


def prepare_on_ray(section: BackendConfig, plan: Plan, *, mirror: str | None = None) -> Dataset:
    """Build the dataset ``plan`` describes on Ray (nothing to do when it is already prepared)."""
    if plan.exists:
        return Dataset(plan.path)
    if plan.config.pairs is not None or plan.config.negatives is not None:
        raise ConfigError(
            "data prepare --backend ray does not build pairs or negatives yet",
            hint="prepare this dataset with the local backend (--backend local)",
        )
    found = materialize(plan.sources, mirror)  # fetched and verified here, read by the workers
    with ray_cluster(section):
        try:
            return _build(section, plan, found)
        except MinimlError:
            raise
        except Exception as err:
            raise explain(err, f"preparing dataset {plan.config.name}") from None


def read_task(
    unit: Resolved, found: dict[str, str], clean: CleanConfig, number: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Ray task: one unit's cleaned rows (numbered ``_unit``/``_row``) and what the driver needs to know."""
    rows, dropped, records = read_and_clean(unit, {k: Path(v) for k, v in found.items()}, clean)
    lists = [c for c in rows.columns if any(isinstance(v, list) for v in rows[c])]
    meta = {
        "dropped": dropped,
        "records": records,
        "columns": list(rows.columns),
        "lists": lists,
        "rows": len(rows),
    }
    return rows.assign(_unit=number, _row=np.arange(len(rows))), meta


def union_columns(metas: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
    """Every unit's columns in the order ``pd.concat`` gives them, and the ones holding lists."""
    columns: list[str] = []
    for meta in metas:
        columns += [c for c in meta["columns"] if c not in columns]
    return columns, {c for meta in metas for c in meta["lists"]}


def filled(batch: pd.DataFrame, columns: list[str], lists: set[str]) -> pd.DataFrame:
    """``batch`` with the columns other units have (empty text or list, as the local concatenation fills)."""
    for column in columns:
        if column not in batch.columns:
            batch[column] = pd.Series([[] if column in lists else ""] * len(batch), index=batch.index)
    return batch


def narrow(batch: pd.DataFrame, columns: list[str], lists: set[str], keys: list[str], keep: list[str]) -> Any:
    """Ray Data: a row's decision keys (``keep`` columns) and the hash of its ``dedup_on`` values."""
    batch = filled(batch, columns, lists)
    values = batch[keys].to_numpy(dtype=object).tolist()
    digests = [_digest([_plain(x) for x in row]) for row in values]
    return batch[keep].assign(**{KEY: digests})


def _plain(value: Any) -> Any:
    """A list column's value as a list (Ray Data hands them over as numpy arrays)."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def _digest(values: list[Any]) -> bytes:
    """128 bits of the row's key values: equal digests for equal values (a collision is ~2^-64 likely)."""
    blob = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(blob, digest_size=16).digest()


def _build(section: BackendConfig, plan: Plan, found: dict[str, Path]) -> Dataset:
    ray = import_ray()
    from ray.data import DataContext

    DataContext.get_current().execution_options.preserve_order = True
    config = plan.config
    task = ray.remote(read_task).options(num_returns=2, num_cpus=section.cpus_per_worker, max_retries=0)
    paths = {k: str(v) for k, v in found.items()}
    refs = [task.remote(unit, paths, config.clean, i) for i, unit in enumerate(read_units(plan.sources))]
    metas: list[dict[str, Any]] = ray.get([meta for _, meta in refs])
    columns, lists = union_columns(metas)
    dropped: Dropped = {}
    for meta in metas:
        add_counts(dropped, meta["dropped"])
    records: list[SourceRecord] = [r for meta in metas for r in meta["records"]]
    rows = ray.data.from_pandas_refs([frame for frame, _ in refs])
    splits = _decide(config, rows, columns, lists, dropped)
    final = [c for c in columns if c not in HIDDEN]
    manifest = make_manifest(
        config.name,
        plan.fingerprint,
        splits,
        columns=final,
        config=config.identity(),
        sources=records,
        dropped=dropped,
        cleaning_version=CLEANING_VERSION,
    )
    codes = _codes(splits, [meta["rows"] for meta in metas])
    writers = {name: _split_writer(rows, codes, SPLITS.index(name), columns, lists, final) for name in splits}
    return store_dataset(manifest, writers)


def _decide(
    config: Any, rows: Any, columns: list[str], lists: set[str], dropped: Dropped
) -> dict[str, pd.DataFrame]:
    """The local path's row decisions, on the narrow table: rows kept per split (``_unit``, ``_row``)."""
    probe = pd.DataFrame(columns=columns)
    keys = list(config.clean.dedup_on)
    if config.clean.dedup or config.clean.cross_split_dedup:
        require_columns(probe, keys, "clean.dedup_on")
    wanted = ["_unit", "_row", "_source", "_split", "target", *config.split.stratify, *config.split.group_by]
    keep = list(dict.fromkeys(c for c in wanted if c in columns or c in ("_unit", "_row")))
    if not config.clean.dedup and not config.clean.cross_split_dedup:
        keys = ["input"]
    kwargs = {"columns": columns, "lists": lists, "keys": keys, "keep": keep}
    table = rows.map_batches(narrow, batch_format="pandas", fn_kwargs=kwargs, num_cpus=0).to_pandas()
    table = table.sort_values(["_unit", "_row"], kind="stable").reset_index(drop=True)
    if config.clean.dedup:
        table = apply_drops(table, dropped, dedup(table, [KEY]))
    caps = {i: s.max_rows for i, s in enumerate(config.sources) if s.max_rows is not None}
    table = apply_drops(table, dropped, cap_sources(table, caps, config.split.seed))
    table = apply_drops(table, dropped, cap_classes(table, config.split))
    names = assign_splits(table, config.split)
    splits = {s: table[names == s] for s in SPLITS}
    splits = {s: f for s, f in splits.items() if len(f)}
    if config.clean.cross_split_dedup:
        splits, more = cross_split_dedup(splits, [KEY])
        add_counts(dropped, more)
    check_not_empty(splits, dropped, config)
    return splits


def _codes(splits: dict[str, pd.DataFrame], sizes: list[int]) -> list[np.ndarray]:
    """Per unit, per row: the index of its split in SPLITS, or -1 for a dropped row (one byte a row)."""
    out = [np.full(size, -1, dtype=np.int8) for size in sizes]
    for name, frame in splits.items():
        code = SPLITS.index(name)
        for unit, part in frame.groupby("_unit", sort=False)["_row"]:
            out[int(unit)][part.to_numpy()] = code
    return out


def select(
    batch: pd.DataFrame,
    codes: list[np.ndarray],
    code: int,
    columns: list[str],
    lists: set[str],
    final: list[str],
) -> pd.DataFrame:
    """Ray Data: the rows of ``batch`` that go to split ``code``, with the dataset's columns, in order."""
    units, rows = batch["_unit"].to_numpy(), batch["_row"].to_numpy()
    mine = np.array([codes[int(u)][int(r)] == code for u, r in zip(units, rows, strict=True)], dtype=bool)
    return filled(batch[mine].copy(), columns, lists)[final]


def _split_writer(
    rows: Any, codes: list[np.ndarray], code: int, columns: list[str], lists: set[str], final: list[str]
) -> Any:
    """``write(path)``: stream split ``code``'s rows into one Parquet file, in the dataset's row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.list_(pa.string()) if c in lists else pa.string()) for c in final])
    kwargs = {"codes": codes, "code": code, "columns": columns, "lists": lists, "final": final}

    def write(path: Path) -> None:
        chosen = rows.map_batches(select, batch_format="pandas", fn_kwargs=kwargs, num_cpus=0)
        with pq.ParquetWriter(path, schema) as out:
            for batch in chosen.iter_batches(batch_format="pandas", batch_size=None):
                if len(batch):
                    out.write_table(pa.Table.from_pandas(batch, schema=schema, preserve_index=False))

    return write

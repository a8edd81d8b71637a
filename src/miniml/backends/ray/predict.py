"""``miniml predict --backend ray``: batch prediction with Ray Data, one model copy per actor.

The input is cut into byte ranges at line ends (JSONL) or read by Ray's Parquet reader; ``map_batches``
hands batches to a fixed pool of ``backend.workers`` actors, each of which loads the model folder once
through the runtime layer (torch or ONNX, whatever the folder says) and answers with the task's own
``predict``. Lines are decoded and answers formatted by the same functions as the local path
(:mod:`miniml.evaluate.predict`), and Ray Data keeps the input order, so the output file is byte for byte the
local one. The driver only streams the answers into the output file (written atomically); it never holds
the input or the output whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from miniml.backends.ray.cluster import apply_env, import_ray, ray_cluster, worker_env
from miniml.backends.ray.failures import explain
from miniml.compute import BackendConfig
from miniml.errors import DataError, MinimlError
from miniml.evaluate.predict import (
    BadInput,
    answer_line,
    atomic_lines,
    bad_input,
    batch_size_for,
    check_input,
    decode_line,
    is_parquet,
    parquet_record,
)
from miniml.runtime.resolve import resolve
from miniml.tasks.registry import get_task, load_model

MIN_CHUNK, MAX_CHUNK = 16 << 10, 8 << 20  # one read task's share of a JSONL file, in bytes


def line_ranges(path: Path, workers: int) -> list[dict[str, Any]]:
    """Byte ranges of ``path`` that start at a line start and end after a newline (or at the end); about
    four per worker, so every actor gets batches."""
    size = path.stat().st_size
    chunk = min(max(size // (4 * workers), MIN_CHUNK), MAX_CHUNK)
    ranges, start = [], 0
    with path.open("rb") as fh:
        while start < size:
            end = min(start + chunk, size)
            if end < size:
                fh.seek(end)
                rest = fh.readline()  # finish the line the cut fell into
                end += len(rest)
            ranges.append({"path": str(path), "start": start, "end": end})
            start = end
    return ranges


def read_lines(batch: dict[str, Any]) -> dict[str, list[bytes]]:
    """Ray Data task: the lines (newline kept, blank ones too) of each byte range, in order."""
    out: list[bytes] = []
    for path, start, end in zip(batch["path"], batch["start"], batch["end"], strict=True):
        with open(str(path), "rb") as fh:
            fh.seek(int(start))
            data = fh.read(int(end) - int(start))
        pieces = data.split(b"\n")
        out += [p + b"\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    return {"raw": out}


class Answerer:
    """Ray Data actor: loads the model once, answers batches of raw lines or Parquet rows."""

    def __init__(self, model: str, top_k: int | None, env: dict[str, str]) -> None:
        apply_env(env)  # a models:/ URI is resolved against this command's home and tracking store
        self.model = load_model(model)
        self.task = get_task(self.model.info.task)
        self.top_k = top_k

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        rows = batch.to_pylist()
        records: list[dict[str, Any] | None] = []
        errors: list[str] = []
        for row in rows:
            try:
                records.append(decode_line(row["raw"]) if "raw" in row else parquet_record(row))
                errors.append("")
            except BadInput as err:
                records.append(None)
                errors.append(f"{err.reason}\t{err.hint}")
        valid = [r for r in records if r is not None]
        answers = iter(self.task.predict(self.model, [r["text"] for r in valid], top_k=self.top_k))
        lines = [answer_line(r, next(answers)) if r is not None else "" for r in records]
        skip = [r is None and not e for r, e in zip(records, errors, strict=True)]
        return {"line": lines, "error": errors, "skip": skip}


def predict_on_ray(
    section: BackendConfig,
    model: str | Path,
    input_path: Path,
    output_path: Path,
    *,
    batch_size: int,
    top_k: int | None,
) -> int:
    """Predict every input of ``input_path`` into ``output_path`` on Ray; returns the lines written."""
    input_path, output_path = Path(input_path).resolve(), Path(output_path)
    check_input(input_path, batch_size)
    source = resolve(model)  # fails here, before any cluster starts, for a bad URI
    task = get_task(source_task(source.path))
    size = batch_size_for(task, batch_size)
    uri = str(model) if str(model).startswith("models:/") else str(source.path)
    with ray_cluster(section):
        try:
            return _write(section, uri, input_path, output_path, size, top_k)
        except MinimlError:
            raise
        except Exception as err:
            raise explain(err, f"predicting {input_path.name}") from None


def no_restarts() -> dict[str, Any]:
    """A failed actor fails the command (with its error); it is not restarted."""
    return {"max_restarts": 0}


def source_task(folder: Path) -> str:
    from miniml.modelfolder import read_info

    return read_info(folder).task


def _write(
    section: BackendConfig, uri: str, input_path: Path, output_path: Path, size: int, top_k: int | None
) -> int:
    written = 0
    with atomic_lines(output_path) as write:
        for number, row in enumerate(_answers(section, uri, input_path, size, top_k), start=1):
            if row["error"]:
                reason, _, hint = row["error"].partition("\t")
                where = f"{input_path}: row {number}" if is_parquet(input_path) else f"{input_path}:{number}"
                raise bad_input(where, BadInput(reason, hint))
            if not row["skip"]:
                write(row["line"])
                written += 1
    return written


def _answers(
    section: BackendConfig, uri: str, input_path: Path, size: int, top_k: int | None
) -> Iterator[dict[str, Any]]:
    ray = import_ray()
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().execution_options.preserve_order = True
    if is_parquet(input_path):
        dataset = ray.data.read_parquet(str(input_path), columns=parquet_columns(input_path), num_cpus=0)
    else:
        ranges = ray.data.from_items(line_ranges(input_path, section.workers))
        dataset = ranges.map_batches(read_lines, batch_size=1, num_cpus=0)
    # reading takes no CPU of the actors' share (a cluster of exactly `workers` CPUs would stall)
    answered = dataset.map_batches(
        Answerer,
        fn_constructor_kwargs={"model": uri, "top_k": top_k, "env": worker_env()},
        batch_size=size,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=section.workers),
        num_cpus=section.cpus_per_worker,
        num_gpus=section.gpus_per_worker or None,
        ray_remote_args_fn=no_restarts,
    )
    for batch in answered.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from batch.to_pylist()


def parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path} is not a readable Parquet file ({err})") from None
    if "text" not in names:
        raise DataError(f'{path} has no "text" column', hint="name the input column text")
    return [c for c in ("text", "id") if c in names]

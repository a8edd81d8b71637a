"""``miniml predict``: batch prediction over a JSONL or Parquet file, streamed in batches, written atomically.

Each input is a JSON object with a ``text`` string per line (JSONL), or a row with a ``text`` column
(Parquet, ``.parquet``/``.pq``); each output line (same order) is the model's task's answer — ``{"label",
"score", "top_k"}`` for classifiers, ``{"generated_text"}`` for generative models — plus the input's ``id``
when it has one. The pieces here (:func:`decode_line`, :func:`parquet_record`, :func:`answer_line`,
:func:`atomic_lines`) are what a cluster backend reuses, so its output is byte for byte the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from miniml.compute import BackendConfig
from miniml.config import StepConfig
from miniml.errors import DataError
from miniml.tasks.registry import get_task, load_model

MAX_LINE_BYTES = 1 << 20  # one input line (a text plus metadata) may not exceed 1 MiB
PARQUET_SUFFIXES = (".parquet", ".pq")


class PredictConfig(StepConfig):
    """``miniml predict``'s settings beyond its options: where it runs (``--set backend.workers=2``)."""

    env_section: ClassVar[str] = "predict"

    backend: BackendConfig = Field(default_factory=lambda: BackendConfig.model_validate({}))


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


class BadInput(ValueError):
    """One input that cannot be read: ``reason`` and ``hint``; the caller says where it is."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


def decode_line(raw: bytes) -> dict[str, Any] | None:
    """``{"text", "id"?}`` from one JSONL line (newline included); None for a blank line."""
    if len(raw) > MAX_LINE_BYTES:
        raise BadInput(f"line longer than {MAX_LINE_BYTES} bytes", "split the text")
    if not raw.strip():
        return None
    try:
        record = json.loads(raw, parse_constant=_no_constant)  # NaN / Infinity are not JSON
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadInput("not valid JSON", "write one JSON object per line") from None
    return check_record(record)


def check_record(record: Any) -> dict[str, Any]:
    """The ``text`` (and ``id``) of a record; BadInput when it has no ``text`` string."""
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise BadInput('no "text" string field', 'each line must look like {"text": "..."}')
    return {"text": record["text"], **({"id": record["id"]} if "id" in record else {})}


def bad_input(where: str, err: BadInput) -> DataError:
    return DataError(f"{where}: {err.reason}", hint=err.hint)


def parse_line(raw: bytes, number: int, source: Path | str) -> dict[str, Any] | None:
    """:func:`decode_line`, with errors naming ``source:number``."""
    try:
        return decode_line(raw)
    except BadInput as err:
        raise bad_input(f"{source}:{number}", err) from None


def parquet_record(row: dict[str, Any]) -> dict[str, Any]:
    """``{"text", "id"?}`` of one Parquet row (a null ``id`` is no id)."""
    return check_record({k: v for k, v in row.items() if k != "id" or v is not None})


def _records(fh: IO[bytes], source: Path) -> Iterator[dict[str, Any]]:
    for number, raw in enumerate(fh, start=1):
        record = parse_line(raw, number, source)
        if record is not None:
            yield record


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of a JSONL or Parquet input file, in order."""
    if not is_parquet(path):
        with path.open("rb") as fh:
            yield from _records(fh, path)
        return
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path} is not a readable Parquet file ({err})") from None
    columns = [c for c in ("text", "id") if c in file.schema_arrow.names]
    if "text" not in columns:
        raise DataError(f'{path} has no "text" column', hint="name the input column text")
    number = 0
    for batch in file.iter_batches(columns=columns, batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            try:
                yield parquet_record(row)
            except BadInput as err:
                raise bad_input(f"{path}: row {number}", err) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def answer_line(record: dict[str, Any], result: dict[str, Any]) -> str:
    """One output line (without the newline): the input's ``id`` (if any), then the task's answer."""
    extra = {"id": record["id"]} if "id" in record else {}
    return json.dumps({**extra, **result}, ensure_ascii=False, allow_nan=False)


def _batches(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_input(input_path: Path, batch_size: int) -> None:
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    if not input_path.is_file():
        raise DataError(
            f"input file {input_path} does not exist",
            hint='pass a JSONL file with a "text" field, or Parquet',
        )


def batch_size_for(task: Any, batch_size: int) -> int:
    """``--batch-size``, capped by what the task takes at once (generative models: 64)."""
    return min(batch_size, task.predict_batch_cap) if task.predict_batch_cap else batch_size


def predict_file(
    model: str | Path,
    input_path: Path,
    output_path: Path,
    *,
    batch_size: int = 256,
    top_k: int | None = None,
) -> int:
    """Predict every input of ``input_path`` into ``output_path``; returns the number of lines written.

    Each line's answer is the model's task's (``Task.predict``): classifiers write ``{"label", "score",
    "top_k"}`` (``top_k``: every label, or the ``top_k`` best), generative models ``{"generated_text"}``.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_input(input_path, batch_size)
    loaded = load_model(model)
    task = get_task(loaded.info.task)
    size = batch_size_for(task, batch_size)
    answer = lambda texts: task.predict(loaded, texts, top_k=top_k)  # noqa: E731
    return stream_records(input_path, output_path, size, answer)


def stream_records(
    input_path: Path,
    output_path: Path,
    batch_size: int,
    answer: Callable[[list[str]], Sequence[dict[str, Any]]],
) -> int:
    """Read ``{"text", "id"?}`` records in batches; write ``{"id"?, **answer}`` per line, atomically."""
    written = 0
    with atomic_lines(output_path) as write, _progress(input_path) as bar:
        for batch in _batches(read_records(input_path), batch_size):
            for record, result in zip(batch, answer([r["text"] for r in batch]), strict=True):
                write(answer_line(record, result))
            written += len(batch)
            bar(written)
    return written


@contextlib.contextmanager
def atomic_lines(output_path: Path) -> Iterator[Callable[[str], None]]:
    """Yield ``write(line)``; the file appears at ``output_path`` only when the block ends without error."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:

            def write(line: str) -> None:
                out.write(line + "\n")

            yield write
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _progress(path: Path) -> Iterator[Any]:
    """A progress bar on stderr (silent when it is not a terminal); yields ``update(records_done)``."""
    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        TextColumn("{task.completed:,} inputs"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("predict", total=None)
        yield lambda done: progress.update(task, completed=done)

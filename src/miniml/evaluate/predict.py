"""``miniml predict``: batch prediction over a JSONL file, streamed in batches, written atomically.

Each input line is a JSON object with a ``text`` string; each output line (same order) is the model's task's
answer — ``{"label", "score", "top_k"}`` for classifiers, ``{"generated_text"}`` for generative models —
plus the input's ``id`` when it has one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from miniml.errors import DataError
from miniml.tasks.registry import get_task, load_model

MAX_LINE_BYTES = 1 << 20  # one input line (a text plus metadata) may not exceed 1 MiB


def _records(fh: IO[bytes], source: Path) -> Iterator[dict[str, Any]]:
    """Yield ``{"text", "id"?}`` per non-blank line; a bad line is a DataError naming its number."""
    for number, raw in enumerate(fh, start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(
                f"{source}:{number}: line longer than {MAX_LINE_BYTES} bytes", hint="split the text"
            )
        if not raw.strip():
            continue
        try:
            record = json.loads(raw, parse_constant=_no_constant)  # NaN / Infinity are not JSON
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise DataError(
                f"{source}:{number}: not valid JSON", hint="write one JSON object per line"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(
                f'{source}:{number}: no "text" string field',
                hint='each line must look like {"text": "..."}',
            )
        yield {"text": record["text"], **({"id": record["id"]} if "id" in record else {})}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _batches(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_file(
    model: str | Path,
    input_path: Path,
    output_path: Path,
    *,
    batch_size: int = 256,
    top_k: int | None = None,
) -> int:
    """Predict every line of ``input_path`` into ``output_path``; returns the number of lines written.

    Each line's answer is the model's task's (``Task.predict``): classifiers write ``{"label", "score",
    "top_k"}`` (``top_k``: every label, or the ``top_k`` best), generative models ``{"generated_text"}``.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise DataError(f"input file {input_path} does not exist", hint="pass a JSONL file with a text field")
    loaded = load_model(model)
    task = get_task(loaded.info.task)
    size = min(batch_size, task.predict_batch_cap) if task.predict_batch_cap else batch_size
    return stream_jsonl(input_path, output_path, size, lambda texts: task.predict(loaded, texts, top_k=top_k))


def stream_jsonl(
    input_path: Path,
    output_path: Path,
    batch_size: int,
    answer: Callable[[list[str]], Sequence[dict[str, Any]]],
) -> int:
    """Read ``{"text", "id"?}`` lines in batches; write ``{"id"?, **answer}`` per line, atomically."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp")
    written = 0
    try:
        with (
            input_path.open("rb") as src,
            os.fdopen(fd, "w", encoding="utf-8") as out,
            _progress(input_path) as bar,
        ):
            for batch in _batches(_records(src, input_path), batch_size):
                for record, result in zip(batch, answer([r["text"] for r in batch]), strict=True):
                    extra = {"id": record["id"]} if "id" in record else {}
                    out.write(json.dumps({**extra, **result}, ensure_ascii=False, allow_nan=False) + "\n")
                written += len(batch)
                bar(src.tell())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written


@contextlib.contextmanager
def _progress(path: Path) -> Iterator[Any]:
    """A bytes-read progress bar on stderr (silent when it is not a terminal); yields ``update(bytes)``."""
    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("predict", total=path.stat().st_size)
        yield lambda done: progress.update(task, completed=done)

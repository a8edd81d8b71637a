"""Readers: one file (or folder) in a given format → a pandas DataFrame of raw records.

Each format is a small pydantic model (a discriminated union on ``type``) and a reader function registered
for it. The columns each reader produces:

- ``csv``: the file's columns (all strings, nothing turned into NaN); ``jsonl`` / ``parquet``: the records'
  fields as they are.
- ``text``: ``text`` (one example per non-blank line).
- ``fasttext``: ``label`` (the first ``__label__X``), ``text``.
- ``conllu``: ``text`` (the ``# text =`` comment), ``sent_id``, and one column per other ``# key = value``
  comment of the file (e.g. xSID's ``dialect``; empty where a sentence lacks it).
- ``tokens``: ``text`` (one token per line, blank lines between units, e.g. DaN+), ``unit`` (its number).
- ``folder``: ``label``, ``text``, ``file`` — per-label files (``unit: line``: label = file stem, one
  example per line) or per-label sub-folders (``unit: file``: label = sub-folder, one example per file).

JSONL and fastText are parsed by hand (orjson per line, one regex): both are line formats, and doing it here
names the failing line and never coerces types (pandas' JSON reader guesses dates and numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import conllu
import orjson
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from miniml.errors import DataError


class _Format(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvFormat(_Format):
    """Delimited text with a header row (or ``columns`` naming the columns of a header-less file)."""

    type: Literal["csv"] = "csv"
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: list[str] | None = Field(None, description="column names when the file has no header row")
    encoding: str = "utf-8"


class JsonlFormat(_Format):
    """One JSON object per line."""

    type: Literal["jsonl"] = "jsonl"


class ParquetFormat(_Format):
    """An Apache Parquet file."""

    type: Literal["parquet"] = "parquet"


class TextFormat(_Format):
    """Plain text, one example per non-blank line."""

    type: Literal["text"] = "text"
    encoding: str = "utf-8"


class FastTextFormat(_Format):
    """fastText supervised format: ``__label__X<whitespace>text`` per line."""

    type: Literal["fasttext"] = "fasttext"
    prefix: str = Field("__label__", min_length=1)
    encoding: str = "utf-8"


class ConlluFormat(_Format):
    """CoNLL-U treebank; each sentence's ``# text =`` comment is one example."""

    type: Literal["conllu"] = "conllu"


class TokensFormat(_Format):
    """One token per line (a column of a delimited line), units separated by blank lines → one text each.

    ``detokenize`` joins tokens with spaces but none before ``, . ! ? ; : % ) ] }`` or after ``( [ {``: a
    tokenizer split these off, the original text had them attached.
    """

    type: Literal["tokens"] = "tokens"
    column: int = Field(0, ge=0, description="which column of a line holds the token")
    delimiter: str = Field("\t", min_length=1, max_length=1)
    detokenize: bool = True
    encoding: str = "utf-8"


class FolderFormat(_Format):
    """A folder of per-label files (``unit: line``) or per-label sub-folders of files (``unit: file``)."""

    type: Literal["folder"] = "folder"
    unit: Literal["line", "file"] = "line"
    glob: str = Field("*", description="which files to read, e.g. '*.txt'")
    encoding: str = "utf-8"


def _shorthand(value: Any) -> Any:
    """Let configs write ``format: csv`` for ``format: {type: csv}``."""
    return {"type": value} if isinstance(value, str) else value


Format = Annotated[
    CsvFormat
    | JsonlFormat
    | ParquetFormat
    | TextFormat
    | FastTextFormat
    | ConlluFormat
    | TokensFormat
    | FolderFormat,
    Field(discriminator="type"),
    BeforeValidator(_shorthand),
]

Reader = Callable[[Path, Any], pd.DataFrame]
_COMMENTS_AND_BREAKS = re.compile(r"^(?:#[^\n]*|[ \t]*)\n", re.MULTILINE)
_SPACE_BEFORE = re.compile(r" (?=[,.!?;:%)\]}])")
_SPACE_AFTER = re.compile(r"(?<=[(\[{]) ")
READERS: dict[str, Reader] = {}


def register(kind: str) -> Callable[[Reader], Reader]:
    """Register a reader function for format ``kind``."""

    def add(fn: Reader) -> Reader:
        READERS[kind] = fn
        return fn

    return add


def read(path: Path, fmt: Any) -> pd.DataFrame:
    """Read ``path`` with the reader for ``fmt``; every failure is a one-line DataError naming the file."""
    reader = READERS[fmt.type]
    try:
        return reader(path, fmt)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist", hint="check the source's path") from None
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not {getattr(fmt, 'encoding', 'utf-8')} text (byte {err.start})",
            hint="set the format's encoding or convert the file",
        ) from None
    except Exception as err:  # parsers raise many types; the user needs the file and the first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"cannot read {path} as {fmt.type}: {first}", hint="check the source's format"
        ) from None


def _lines(path: Path, encoding: str) -> list[str]:
    return path.read_text(encoding=encoding).splitlines()


@register("csv")
def read_csv(path: Path, fmt: CsvFormat) -> pd.DataFrame:
    header: int | None = None if fmt.columns else 0
    return pd.read_csv(
        path,
        sep=fmt.delimiter,
        header=header,
        names=fmt.columns,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding=fmt.encoding,
    )


@register("jsonl")
def read_jsonl(path: Path, fmt: JsonlFormat) -> pd.DataFrame:
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise DataError(f"line {number} of {path} is not valid JSON: {err}") from None
        if not isinstance(record, dict):
            raise DataError(f"line {number} of {path} is not a JSON object")
        records.append(record)
    return pd.DataFrame.from_records(records)


@register("parquet")
def read_parquet(path: Path, fmt: ParquetFormat) -> pd.DataFrame:
    return pd.read_parquet(path)


@register("text")
def read_text(path: Path, fmt: TextFormat) -> pd.DataFrame:
    return pd.DataFrame({"text": [line for line in _lines(path, fmt.encoding) if line.strip()]})


@register("fasttext")
def read_fasttext(path: Path, fmt: FastTextFormat) -> pd.DataFrame:
    lines = pd.Series([line for line in _lines(path, fmt.encoding) if line.strip()], dtype=object)
    prefix = re.escape(fmt.prefix)
    parts = lines.str.extract(rf"^{prefix}(?P<label>\S+)(?:\s+{prefix}\S+)*\s+(?P<text>.*)$")
    bad = parts["label"].isna()
    if bad.any():
        first = int(bad.to_numpy().argmax())
        raise DataError(
            f"line {first + 1} of {path} is not '{fmt.prefix}LABEL text'",
            hint="check that the file is in fastText format (or set format.prefix)",
        )
    return parts.astype(str)


@register("conllu")
def read_conllu(path: Path, fmt: ConlluFormat) -> pd.DataFrame:
    # Only comments and sentence breaks are parsed: the token lines are not needed for `# text =`, and
    # skipping them makes reading ten times faster.
    text = path.read_text(encoding="utf-8")
    meta = "".join(_COMMENTS_AND_BREAKS.findall(text.replace("\r\n", "\n")))
    sentences = conllu.parse(meta)
    texts = [s.metadata.get("text") or "" for s in sentences]
    if text.strip() and not any(texts):
        raise DataError(f"{path} has no '# text =' lines", hint="is it a CoNLL-U file?")
    keys = dict.fromkeys(k for s in sentences for k in s.metadata if k not in ("text", "sent_id"))
    columns = {"text": texts, "sent_id": [s.metadata.get("sent_id") or "" for s in sentences]}
    columns |= {k: [s.metadata.get(k) or "" for s in sentences] for k in keys}
    return pd.DataFrame(columns)


@register("tokens")
def read_tokens(path: Path, fmt: TokensFormat) -> pd.DataFrame:
    units: list[list[str]] = [[]]
    for number, line in enumerate(_lines(path, fmt.encoding), start=1):
        if not line.strip():
            if units[-1]:
                units.append([])
            continue
        fields = line.split(fmt.delimiter)
        if fmt.column >= len(fields):
            raise DataError(
                f"line {number} of {path} has {len(fields)} column(s), the token is in column {fmt.column}",
                hint="set format.column (counted from 0) or format.delimiter",
            )
        units[-1].append(fields[fmt.column].strip())
    texts = [" ".join(t for t in unit if t) for unit in units if unit]
    if fmt.detokenize:
        texts = [_SPACE_AFTER.sub("", _SPACE_BEFORE.sub("", t)) for t in texts]
    return pd.DataFrame({"text": texts, "unit": [str(i) for i in range(1, len(texts) + 1)]})


@register("folder")
def read_folder(path: Path, fmt: FolderFormat) -> pd.DataFrame:
    if not path.is_dir():
        raise DataError(f"{path} is not a folder", hint="format 'folder' reads a folder of per-label files")
    rows: list[tuple[str, str, str]] = []
    if fmt.unit == "line":
        for file in sorted(p for p in path.glob(fmt.glob) if p.is_file()):
            rows += [(file.stem, line, file.name) for line in _lines(file, fmt.encoding) if line.strip()]
    else:
        for file in sorted(p for p in path.glob(f"*/{fmt.glob}") if p.is_file()):
            rows.append((file.parent.name, file.read_text(encoding=fmt.encoding), file.name))
    if not rows:
        raise DataError(
            f"{path} holds no files matching {fmt.glob!r}"
            + (" in sub-folders" if fmt.unit == "file" else ""),
            hint="per-label files (unit: line) or per-label sub-folders (unit: file)",
        )
    return pd.DataFrame(rows, columns=["label", "text", "file"])

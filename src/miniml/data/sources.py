"""Sources of a prepare config: which files (catalog or local), how to read them, and how to map them.

A source is resolved in two steps so that a repeat ``prepare`` can stop early: :func:`resolve` names the
files and their sha256 without reading them (catalog facts, or hashing local files), and :func:`load` fetches,
reads, joins and maps them to ``input`` / ``target`` / extras.
"""

from __future__ import annotations

import glob
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from miniml.data.catalog import CatalogFile, select_files
from miniml.data.fetch import fetch_files
from miniml.data.mapping import Template, apply_label_map, as_text, require_columns
from miniml.data.readers import Format, read
from miniml.errors import ConfigError, DataError

SplitName = Literal["train", "validation", "test"]
RESERVED = {"input", "target", "_split", "_source"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compile(pattern: str, need_groups: bool = False) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"invalid regular expression {pattern!r}: {err}") from None
    if need_groups and not compiled.groupindex:
        raise ValueError(f"pattern {pattern!r} needs named groups like (?P<name>...)")
    return pattern


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Extract(_Strict):
    """Add fields from a regex's named groups over a column; rows that do not match are dropped."""

    column: str
    pattern: str

    _check = field_validator("pattern")(lambda v: _compile(v, need_groups=True))


class Rewrite(_Strict):
    """Regex substitution on a column (``replacement`` may use ``\\1`` or ``\\g<name>``)."""

    column: str
    pattern: str
    replacement: str = ""

    _check = field_validator("pattern")(lambda v: _compile(v))


class Collect(_Strict):
    """Gather the matches of a regex in ``column`` over every row that shares the ``by`` key into ``into``.

    Each row gets its group's distinct matches (the first group of ``pattern``, or the whole match; a match
    whose group did not take part is skipped, so alternatives can consume text that must not count), sorted
    case-insensitively and joined with ``separator``. Example: the column names of a table, read from all the
    queries about that table, to give rows whose source has no schema a ``columns:`` line. Runs before
    ``extract`` (rows that an extract drops still contribute) and before ``rewrite``.
    """

    column: str
    pattern: str
    by: list[str] = Field(min_length=1, description="key columns of a group")
    into: str = Field(min_length=1, description="new column with the group's matches")
    separator: str = ", "

    _check = field_validator("pattern")(lambda v: _compile(v))
    _list = field_validator("by", mode="before")(_as_list)


class Join(_Strict):
    """Join each record with a record of another file: by line position (``on: row``) or by key columns."""

    files: list[str] | None = Field(None, description="catalog file patterns of the same dataset")
    path: str | None = Field(None, description="local file, relative to the config's folder")
    format: Format | None = Field(None, description="defaults to the source's format")
    by: list[str] | Literal["row"] = Field("row", description="row: line by line; or key columns")
    check: list[str] | None = Field(
        None, description="by row: columns that must agree on every line (default: all shared columns)"
    )

    _list = field_validator("files", mode="before")(_as_list)

    @model_validator(mode="after")
    def _one_location(self) -> Join:
        if (self.files is None) == (self.path is None):
            raise ValueError("give exactly one of files (catalog) or path (local)")
        return self


class SourceConfig(_Strict):
    """One input of a dataset: where the files are, their format, and how records map to the contract."""

    dataset: str | None = Field(None, description="catalog dataset name (files are fetched and verified)")
    files: list[str] | None = Field(None, description="glob(s) over the catalog files' base names")
    path: str | None = Field(None, description="local file, folder or glob, relative to the config's folder")
    format: Format
    split: SplitName | None = Field(None, description="fixed split for these rows; else split by fractions")
    max_rows: int | None = Field(
        None, ge=1, description="keep at most this many rows (seeded sample after cleaning and dedup)"
    )
    path_fields: str | None = Field(None, description="regex with named groups over the file name")
    join: Join | None = None
    collect: list[Collect] = Field(default_factory=list)
    extract: list[Extract] = Field(default_factory=list)
    rewrite: list[Rewrite] = Field(default_factory=list)
    input: str | None = Field(None, description="column holding the input text")
    input_template: str | None = None
    target: str | None = Field(None, description="column holding the target / label")
    target_template: str | None = None
    label: str | None = Field(None, description="one fixed label for every row of this source")
    label_map: dict[str, str | None] | None = Field(None, description="raw → label; null drops the label")
    label_default: str | None = Field(None, description="label for raw labels the map does not name")
    keep: list[str] = Field(default_factory=list, description="extra columns kept as they are (as text)")
    extras: dict[str, str | list[str]] = Field(default_factory=dict, description="extra columns by template")

    _lists = field_validator("files", mode="before")(_as_list)
    _regex = field_validator("path_fields")(lambda v: v if v is None else _compile(v, need_groups=True))

    @model_validator(mode="after")
    def _consistent(self) -> SourceConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of dataset (catalog name) or path (local files)")
        if self.files is not None and self.dataset is None:
            raise ValueError("files selects catalog files; use it with dataset")
        if (self.input is None) == (self.input_template is None):
            raise ValueError("give exactly one of input (a column) or input_template")
        if sum(x is not None for x in (self.target, self.target_template, self.label)) != 1:
            raise ValueError("give exactly one of target (a column), target_template or label")
        if self.label_default is not None and self.label_map is None:
            raise ValueError("label_default only applies together with label_map")
        clash = RESERVED & (set(self.keep) | set(self.extras) | {c.into for c in self.collect})
        if clash:
            raise ValueError(f"extra column(s) {sorted(clash)} clash with the dataset's own columns")
        if any(isinstance(v, list) and not v for v in self.extras.values()):
            raise ValueError("an extras list needs at least one template")
        for text in self.templates():
            try:
                Template(text)
            except ConfigError as err:  # as a ValueError, pydantic names the key
                raise ValueError(str(err)) from None
        return self

    def templates(self) -> list[str]:
        """Every template this source renders (validated at construction)."""
        out = [t for t in (self.input_template, self.target_template) if t is not None]
        for value in self.extras.values():
            out += [value] if isinstance(value, str) else value
        return out

    def describe(self, index: int) -> str:
        where = f"{self.dataset}: {', '.join(self.files or ['*'])}" if self.dataset else self.path
        return f"source {index + 1} ({where})"


@dataclass(frozen=True)
class SourceFile:
    """One resolved file: a catalog entry (fetched on load) or a local path, with its sha256."""

    uri: str
    sha256: str
    bytes: int
    license: str = ""
    catalog: CatalogFile | None = None
    local: Path | None = None

    @property
    def name(self) -> str:
        return self.catalog.name if self.catalog else Path(self.uri.removeprefix("file:")).name


@dataclass(frozen=True)
class Resolved:
    """A source with its files (and its join's files) named and hashed."""

    index: int
    config: SourceConfig
    files: list[SourceFile]
    join_files: list[SourceFile]

    @property
    def all_files(self) -> list[SourceFile]:
        return self.files + self.join_files


def resolve(config: SourceConfig, index: int, base_dir: Path) -> Resolved:
    """Name and hash the files of a source without reading them."""
    if config.dataset is not None:
        files = [_catalog_file(f) for f in select_files(config.dataset, config.files)]
    else:
        files = _local_files(str(config.path), base_dir, folder=config.format.type == "folder")
    join_files: list[SourceFile] = []
    if config.join is not None:
        join = config.join
        if join.files is not None:
            if config.dataset is None:
                raise DataError(f"{config.describe(index)}: join.files needs a catalog dataset source")
            join_files = [_catalog_file(f) for f in select_files(config.dataset, join.files)]
        else:
            join_files = _local_files(str(join.path), base_dir, folder=False)
    return Resolved(index, config, files, join_files)


def _catalog_file(file: CatalogFile) -> SourceFile:
    return SourceFile(file.url, file.sha256, file.bytes, file.license, catalog=file)


def _local_files(pattern: str, base_dir: Path, *, folder: bool) -> list[SourceFile]:
    full = Path(pattern).expanduser()
    full = full if full.is_absolute() else base_dir / full
    matches = sorted(Path(p) for p in glob.glob(str(full))) if glob.has_magic(str(full)) else [full]
    matches = [p for p in matches if p.exists()]
    if not matches:
        raise DataError(f"no file matches {pattern!r} (looked in {base_dir})", hint="check the source's path")
    out = []
    for path in matches:
        if folder != path.is_dir():
            kind = "a folder" if folder else "a file"
            raise DataError(f"{path} is not {kind}", hint="format 'folder' reads folders, the others files")
        digest, size = _hash_tree(path) if folder else _hash_file(path)
        out.append(SourceFile(f"file:{path}", digest, size, local=path))
    return out


def _hash_file(path: Path) -> tuple[str, int]:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest(), path.stat().st_size
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None


def _hash_tree(folder: Path) -> tuple[str, int]:
    """A folder's hash: sha256 over its files' relative paths and hashes, in sorted order."""
    outer = hashlib.sha256()
    total = 0
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest, size = _hash_file(file)
        outer.update(f"{file.relative_to(folder)}\0{digest}\n".encode())
        total += size
    return outer.hexdigest(), total


def materialize(sources: list[Resolved], mirror: str | None = None) -> dict[str, Path]:
    """Fetch every catalog file the sources name (verified); map sha256 → readable path."""
    catalog = {f.sha256: f.catalog for s in sources for f in s.all_files if f.catalog is not None}
    fetched = fetch_files(list(catalog.values()), mirror=mirror) if catalog else []
    found = {r.file.sha256: r.path for r in fetched}
    found.update({f.sha256: f.local for s in sources for f in s.all_files if f.local is not None})
    return found


def load(source: Resolved, paths: dict[str, Path]) -> tuple[pd.DataFrame, dict[str, int], list[int]]:
    """Read and map one source → (rows with input/target/extras/_split, dropped by reason, rows per file)."""
    config, where = source.config, source.config.describe(source.index)
    frames = [_read_file(config, f, paths[f.sha256]) for f in source.files]
    rows_per_file = [len(f) for f in frames]
    if config.join is not None:
        frames = _join(config, source, frames, paths, where)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    dropped: dict[str, int] = {}
    for gather in config.collect:
        require_columns(frame, [gather.column, *gather.by], where)
        frame = _collect_matches(frame, gather)
    for step in config.extract:
        require_columns(frame, [step.column], where)
        parts = as_text(frame[step.column]).str.extract(step.pattern)
        matched = parts.notna().all(axis=1)
        dropped["pattern_mismatch"] = dropped.get("pattern_mismatch", 0) + int((~matched).sum())
        frame = pd.concat([frame.drop(columns=parts.columns, errors="ignore"), parts], axis=1)[matched]
    for rule in config.rewrite:
        require_columns(frame, [rule.column], where)
        frame[rule.column] = as_text(frame[rule.column]).str.replace(
            rule.pattern, rule.replacement, regex=True
        )
    mapped, excluded = _map(config, frame.reset_index(drop=True), where)
    if excluded:
        dropped["label_excluded"] = excluded
    return mapped, {k: v for k, v in dropped.items() if v}, rows_per_file


def _collect_matches(frame: pd.DataFrame, gather: Collect) -> pd.DataFrame:
    compiled = re.compile(gather.pattern)
    found = as_text(frame[gather.column]).map(
        lambda text: {m.group(1) if compiled.groups else m.group(0) for m in compiled.finditer(text)} - {None}
    )
    keys = frame[gather.by].astype(str).agg("\0".join, axis=1)
    union: dict[str, set[str]] = {}
    for key, names in zip(keys, found, strict=True):
        union.setdefault(key, set()).update(names)
    joined = {k: gather.separator.join(sorted(v, key=lambda n: (n.lower(), n))) for k, v in union.items()}
    return frame.assign(**{gather.into: keys.map(joined)})


def _read_file(config: SourceConfig, file: SourceFile, path: Path) -> pd.DataFrame:
    frame = read(path, config.format)
    fields = {"file": file.name}
    if config.path_fields:
        match = re.search(config.path_fields, file.name)
        if match is None:
            raise DataError(
                f"path_fields {config.path_fields!r} does not match file name {file.name!r}",
                hint="fix the pattern so it matches every file of the source",
            )
        fields.update({k: v or "" for k, v in match.groupdict().items()})
    for key, value in fields.items():
        if key not in frame.columns:
            frame[key] = value
    return frame


def _join(
    config: SourceConfig,
    source: Resolved,
    frames: list[pd.DataFrame],
    paths: dict[str, Path],
    where: str,
) -> list[pd.DataFrame]:
    join = config.join
    assert join is not None
    fmt = join.format or config.format
    others = [read(paths[f.sha256], fmt) for f in source.join_files]
    if join.by == "row":
        if len(others) != len(frames):
            raise DataError(
                f"{where}: join.by row pairs files one to one, got {len(frames)} and {len(others)}"
            )
        return [
            _join_rows(left, right, join.check, where) for left, right in zip(frames, others, strict=True)
        ]
    right = pd.concat(others, ignore_index=True) if len(others) > 1 else others[0]
    joined = []
    for left in frames:
        require_columns(left, join.by, where)
        require_columns(right, join.by, f"{where} join")
        try:
            joined.append(
                left.merge(right, on=join.by, how="inner", validate="many_to_one", suffixes=("", "_r"))
            )
        except pd.errors.MergeError:
            raise DataError(f"{where}: join keys {join.by} are not unique in the joined file") from None
    return joined


def _join_rows(left: pd.DataFrame, right: pd.DataFrame, check: list[str] | None, where: str) -> pd.DataFrame:
    """Join by line position; the checked columns must agree on every row (else the files are not aligned).

    Shared columns that are not checked keep the left file's values.
    """
    if len(left) != len(right):
        raise DataError(f"{where}: join.by row needs files of equal length, got {len(left)} and {len(right)}")
    shared = [c for c in left.columns if c in right.columns and c != "file"]
    if check is not None:
        require_columns(left, check, where)
        require_columns(right, check, f"{where} join")
    for column in shared if check is None else check:
        differs = as_text(left[column]) != as_text(right[column])
        if differs.any():
            row = int(differs.to_numpy().argmax())
            raise DataError(f"{where}: joined files disagree on {column!r} at row {row + 1}; not aligned")
    extra = right.drop(columns=[*shared, "file"], errors="ignore").reset_index(drop=True)
    return pd.concat([left.reset_index(drop=True), extra], axis=1)


def _map(config: SourceConfig, frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, int]:
    """Build input / target / extras; return them and how many rows the label map excluded."""
    out = pd.DataFrame(index=frame.index)
    out["input"] = _column_or_template(frame, config.input, config.input_template, where)
    if config.label is not None:
        out["target"] = config.label
    else:
        out["target"] = _column_or_template(frame, config.target, config.target_template, where)
    excluded = 0
    if config.label_map is not None:
        out["target"], keep = apply_label_map(out["target"], config.label_map, config.label_default, where)
        excluded = int((~keep).sum())
    else:
        keep = pd.Series(True, index=frame.index)
    require_columns(frame, config.keep, where)
    for column in config.keep:
        out[column] = as_text(frame[column])
    for name, spec in config.extras.items():
        if isinstance(spec, str):
            out[name] = Template(spec).render(frame, where)
        else:
            rendered = [Template(t).render(frame, where) for t in spec]
            out[name] = pd.Series(
                [list(v) for v in zip(*rendered, strict=True)], index=frame.index, dtype=object
            )
    out["_split"] = config.split
    return out[keep].reset_index(drop=True), excluded


def _column_or_template(
    frame: pd.DataFrame, column: str | None, template: str | None, where: str
) -> pd.Series:
    if column is not None:
        require_columns(frame, [column], where)
        return as_text(frame[column])
    return Template(str(template)).render(frame, where)

"""Mapping raw records to the dataset contract: ``input``, ``target`` and kept extra columns.

Templates are Python-free: ``"{question}"`` or ``"table: {table_id}\\nQ: {question}"`` fill named fields
from the record; ``{{`` and ``}}`` are literal braces. No attribute access, indexing, conversions or format
specs, so a config can never run code. Label maps turn raw labels into the dataset's classes.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any

import pandas as pd

from miniml.errors import ConfigError, DataError

_FIELD = re.compile(r"^[^.\[\]!:{}]+$")


def _text(value: Any) -> str:
    """A record value as text: missing → empty, everything else → ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


class Template:
    """A ``{field}`` template, validated once and rendered column-wise over a DataFrame."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as err:
            raise ConfigError(
                f"template {text!r} is malformed: {err}", hint="write {{ and }} for braces"
            ) from None
        for literal, field, spec, conversion in parsed:
            if field is not None and (spec or conversion or not _FIELD.match(field)):
                raise ConfigError(
                    f"template {text!r}: '{{{field}}}' is not a plain field name",
                    hint="templates only fill {name} from record fields; no '.', '[]', '!' or ':'",
                )
            self.parts.append((literal, field))

    @property
    def fields(self) -> list[str]:
        return [f for _, f in self.parts if f is not None]

    def render(self, frame: pd.DataFrame, where: str) -> pd.Series:
        """Fill the template for every row of ``frame``; a missing field is a DataError naming ``where``."""
        require_columns(frame, self.fields, where)
        out = pd.Series([""] * len(frame), index=frame.index, dtype=object)
        for literal, field in self.parts:
            if literal:
                out = out + literal
            if field is not None:
                out = out + as_text(frame[field])
        return out


def as_text(column: pd.Series) -> pd.Series:
    """A column as Python strings (missing values become empty strings)."""
    if column.dtype == object and all(isinstance(v, str) for v in column):
        return column
    return column.map(_text).astype(object)


def require_columns(frame: pd.DataFrame, names: list[str], where: str) -> None:
    """Raise a DataError naming the missing columns and the ones that exist."""
    missing = [n for n in dict.fromkeys(names) if n not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: column {', '.join(map(repr, missing))} not found",
            hint=f"available: {', '.join(map(str, frame.columns)) or 'none'}",
        )


def apply_label_map(
    target: pd.Series, label_map: dict[str, str | None], default: str | None, where: str
) -> tuple[pd.Series, pd.Series]:
    """Map raw labels; return (mapped labels, mask of rows to keep). A ``None`` value drops the label.

    Labels the map does not name become ``default``; without a default they are an error listing them.
    """
    raw = as_text(target)
    unmapped = sorted(set(raw) - set(label_map))
    if unmapped and default is None:
        shown = ", ".join(map(repr, unmapped[:10])) + (" …" if len(unmapped) > 10 else "")
        raise DataError(
            f"{where}: label_map leaves label(s) {shown} unmapped",
            hint="add them to label_map (null drops a label) or set label_default",
        )
    mapped = raw.map(lambda v: label_map.get(v, default))
    keep = mapped.notna()
    return mapped.where(keep, ""), keep

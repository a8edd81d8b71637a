"""Model URIs: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` or a local folder.

``ModelSource`` is what one resolves to (:func:`miniml.runtime.resolve`).

Hand-written rather than MLflow's ``parse_model_uri`` because that one also accepts stages and
``models:/m-<id>`` logged-model ids, which miniml does not use, and its errors are not one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from miniml.errors import ModelError, RegistryError

SCHEME = "models:/"
# Registered model and alias names: they appear in URIs and server routes, so no '/', '@' or spaces.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: a name and at most one of version and alias (neither = latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{SCHEME}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        return f"{SCHEME}{self.name}"


@dataclass(frozen=True)
class ModelSource:
    """Where a model URI points: the local folder and, for registry URIs, name, version and alias."""

    uri: str
    path: Path
    name: str
    version: int | None = None
    alias: str | None = None


def check_name(name: str) -> str:
    """``name`` if it can be a registered model name, else a RegistryError naming the rule."""
    if not NAME_PATTERN.match(name or ""):
        raise RegistryError(
            f"invalid model name {name!r}",
            hint="use letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 chars",
        )
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it can be an alias name (not a number, which would read as a version)."""
    if not ALIAS_PATTERN.match(alias or "") or alias.lower() == "latest":
        raise RegistryError(
            f"invalid alias {alias!r}",
            hint="use letters, digits, '_' or '-', starting with a letter or '_' (e.g. champion)",
        )
    return alias


def parse_version(text: str | int) -> int:
    """A version number ≥ 1 from ``3`` or ``"3"``; anything else is a RegistryError."""
    value = str(text).strip()
    if not value.isdigit() or int(value) < 1:
        raise RegistryError(f"invalid model version {text!r}", hint="versions are whole numbers from 1")
    return int(value)


def is_model_uri(uri: str | Path) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME`` (latest version)."""
    if not is_model_uri(uri):
        raise ModelError(f"{uri!r} is not a model URI", hint="write models:/NAME@ALIAS or models:/NAME/3")
    body = uri[len(SCHEME) :].strip("/")
    try:
        if "@" in body:
            name, _, alias = body.partition("@")
            return ModelRef(check_name(name), alias=check_alias(alias))
        name, sep, version = body.partition("/")
        if sep and "/" in version:
            raise RegistryError(f"too many parts in {uri!r}")
        if sep and version.lower() != "latest":
            return ModelRef(check_name(name), version=parse_version(version))
        return ModelRef(check_name(name))
    except RegistryError as err:
        raise ModelError(
            f"invalid model URI {uri!r}: {err}",
            hint="write models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME",
        ) from None

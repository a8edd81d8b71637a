"""Loading step configs: YAML file < environment < ``--set key=value``, validated by one pydantic schema.

Each step (``data prepare``, ``train``, ``optimize``, ``serve``, ``pipeline``, the promotion gate) has one
schema, a subclass of :class:`StepConfig`, and every one of them loads through :func:`load_config` (one
merge, one precedence; a pipeline's inline step configs too). Precedence, lowest to highest:

1. the YAML file given on the command line;
2. environment variables ``MINIML_<SECTION>__<KEY>[__<SUBKEY>...]`` where SECTION is the schema's
   ``env_section`` (``MINIML_TRAIN__EPOCHS=3`` sets ``epochs`` of a train config);
3. ``--set key.subkey=value`` on the command line.

Values from the environment and ``--set`` are parsed as YAML scalars/flow collections, so ``3`` is an int,
``true`` a bool and ``[a, b]`` a list. Validation errors name the key, what was wrong, and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from miniml.errors import ConfigError

T = TypeVar("T", bound="StepConfig")


class StepConfig(BaseModel):
    """Base of every step's config: unknown keys are errors, values are validated on construction."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
    env_section: ClassVar[str] = ""


def parse_value(text: str) -> Any:
    """Parse an override value the way YAML would (``3`` → int, ``[a, b]`` → list, ``x`` → str)."""
    if not text.strip():
        return ""
    try:
        check_depth(yaml.parse(text), f"override value {text[:40]!r}...")
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for ``dotted == "a.b.c"``, creating mappings on the way."""
    keys = [k for k in dotted.split(".") if k]
    if not keys:
        raise ConfigError(f"empty key in override {dotted!r}", hint="write --set key.subkey=value")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a": {"b": 1}, "c": "x"}``."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value", hint="write --set key.subkey=value")
        set_path(tree, key.strip(), parse_value(value))
    return tree


def env_overrides(section: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Collect ``MINIML_<SECTION>__KEY__SUB=value`` variables into a nested mapping."""
    if not section:
        return {}
    environ = os.environ if environ is None else environ
    prefix = f"MINIML_{section.upper()}__"
    tree: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if name.startswith(prefix) and len(name) > len(prefix):
            dotted = ".".join(part.lower() for part in name[len(prefix) :].split("__"))
            set_path(tree, dotted, parse_value(value))
    return tree


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``top``; nested mappings merge, everything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a parse error or a non-mapping is a one-line ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    data = parse_yaml(text, f"config file {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


MAX_DEPTH = 100  # nesting no config needs; deeper documents are refused before they exhaust the stack


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error is a ConfigError naming ``source``, line and column.

    Documents nested deeper than :data:`MAX_DEPTH` are refused up front: PyYAML's composer recurses once
    per level, so ``[[[[...]]]]`` 100,000 deep would otherwise end in a RecursionError (a crash, not a
    message).
    """
    try:
        check_depth(yaml.parse(text), source)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None


def check_depth(events: Any, source: str) -> None:
    """Walk YAML parser events (no recursion) and refuse nesting deeper than :data:`MAX_DEPTH`."""
    depth = 0
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
                raise ConfigError(
                    f"{source} nests collections more than {MAX_DEPTH} levels deep{where}",
                    hint="configs need a few levels; check the file",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming every bad key, what is wrong with it, and how to set it."""
    parts = []
    for item in err.errors()[:5]:
        key = ".".join(str(p) for p in item["loc"]) or "(root)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling"
        elif item["type"] == "missing":
            msg = "required key is missing"
        elif "input" in item and item["type"] != "missing":
            shown = repr(item["input"])
            msg = f"{msg} (got {shown[:60]})"
        parts.append(f"{key}: {msg}")
    more = f"; and {len(err.errors()) - 5} more" if len(err.errors()) > 5 else ""
    return f"invalid config {source}: " + "; ".join(parts) + more + " — fix the file or use --set KEY=VALUE"


def validate(schema: type[T], data: Mapping[str, Any], source: str = "") -> T:
    """Build ``schema`` from ``data``; a ValidationError becomes a one-line ConfigError."""
    try:
        return schema.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source or schema.__name__)) from None


def load_config(
    schema: type[T],
    source: Path | str | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    base_dir_key: str | None = None,
    base_dir: Path | None = None,
    defaults: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    adjust: Callable[[dict[str, Any], Path], None] | None = None,
    select: Callable[[Mapping[str, Any]], type[T]] | None = None,
    where: str | None = None,
) -> T:
    """Load a step config: ``defaults`` < file (or inline mapping) < environment < ``overrides`` < ``flags``.

    Args:
        source: a YAML file, an inline mapping (a pipeline's step), or None (defaults and overrides only).
        base_dir_key: a key set to the file's folder (or ``base_dir`` for a mapping) unless given.
        defaults: the lowest layer (e.g. a registered model's stored gate settings).
        flags: the highest layer (explicit command-line options such as ``--port``).
        adjust: rewrites the file's own mapping before the merge (paths relative to the file, shorthands).
        select: picks the schema from the merged mapping (the train config's ``task`` key).
        where: how messages name the source (default: the file, else the schema).
    """
    file = Path(source) if isinstance(source, str | Path) else None
    data: dict[str, Any] = dict(source) if isinstance(source, Mapping) else {}
    folder = base_dir
    if file is not None:
        data, folder = read_yaml(file), file.resolve().parent
        if adjust is not None:
            adjust(data, folder)
    data = deep_merge(dict(defaults or {}), data)
    data = deep_merge(data, env_overrides(schema.env_section, environ))
    data = deep_merge(data, parse_overrides(overrides))
    data = deep_merge(data, flags or {})
    if base_dir_key and folder is not None and base_dir_key not in data:
        data[base_dir_key] = str(folder)
    chosen = select(data) if select is not None else schema
    return validate(chosen, data, where or (str(file) if file is not None else schema.__name__))

"""The ``miniml train`` config: the keys every task shares (``TrainConfig``) + the task's own schema.

Training hyper-parameters sit at the top level (``epochs``, ``batch_size``, ...; the environment form is
``MINIML_TRAIN__EPOCHS=3``); ``task`` (default ``classification``) picks the schema, which adds the
``model:`` section and the task's own keys (``miniml.tasks.<task>``). One loader, one precedence:
file < environment < ``--set``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from miniml.config import load_config
from miniml.tasks.base import TrainConfig
from miniml.tasks.registry import train_config_schema

__all__ = ["TrainConfig", "load_train_config", "train_config"]


def load_train_config(
    source: Path | str | Mapping[str, Any] | None,
    overrides: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    where: str | None = None,
    flags: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Load a train config (a file or a mapping) with the schema its ``task`` key selects; ``flags`` are
    command-line options above every other layer (``--backend ray``)."""
    return load_config(
        TrainConfig, source, overrides, environ=environ, select=train_config_schema, where=where, flags=flags
    )


def train_config(data: Mapping[str, Any]) -> TrainConfig:
    """A train config from a mapping (Python callers): validated by the schema its ``task`` selects."""
    return load_train_config(dict(data), environ={})

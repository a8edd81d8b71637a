"""A task says how dataset rows become training examples and how model outputs become answers.

The trainer, registry and server are shared; each task (``classification`` now, ``seq2seq`` and
``causal_lm`` next) is one module implementing :class:`Task` and registered by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from miniml.errors import ConfigError
from miniml.models.featurizer import Featurizer


class Task(Protocol):
    """The per-task hooks the shared training engine, evaluation and prediction call."""

    name: str

    def examples(self, frame: pd.DataFrame, featurizer: Featurizer) -> list[dict[str, Any]]:
        """Dataset rows → per-example feature dicts (with their training target under ``labels``)."""
        ...

    def collate(
        self, featurizer: Featurizer, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False
    ) -> dict[str, Any]:
        """Per-example features → one batch of tensors (model inputs + ``labels``)."""
        ...

    def metrics(self, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        """Validation metrics from true targets and model outputs."""
        ...


_TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    def wrap(factory: Callable[..., Task]) -> Callable[..., Task]:
        _TASKS[name] = factory
        return factory

    return wrap


def get_task(name: str, **kwargs: Any) -> Task:
    """Instantiate the task registered as ``name``."""
    import miniml.tasks.classification  # noqa: F401  (registers the built-in tasks)

    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}", hint=f"known: {', '.join(sorted(_TASKS))}")
    return _TASKS[name](**kwargs)

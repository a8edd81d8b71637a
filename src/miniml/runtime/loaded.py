"""``LoadedModel``: one model version loaded for inference — the one loaded-model type of miniml.

Evaluation, batch prediction, optimization and the server all hold this: where the model came from (URI,
folder, registry name / version / alias), its ``miniml.json``, and the runtime object that runs it
(``predictor``: a probability predictor for classifiers, a :class:`~miniml.runtime.generation.Generator`
for generative models). It is immutable: the server swaps versions by replacing the whole object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from miniml.modelfolder import ModelInfo


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version (see the module docstring)."""

    name: str
    uri: str
    version: int | None
    alias: str | None
    path: Path
    info: ModelInfo
    predictor: Any
    key: str = field(default="", compare=False)  # cache namespace: unique per model version
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    replicas: tuple[Any, ...] = field(default=(), compare=False)  # more predictors: one per extra worker

    @property
    def task(self) -> str:
        return self.info.task

    def replica(self, worker: int) -> LoadedModel:
        """This version as seen by worker ``worker``: its own predictor (worker 0: ``predictor``)."""
        if worker == 0 or not self.replicas:
            return self
        return replace(self, predictor=self.replicas[(worker - 1) % len(self.replicas)], replicas=())

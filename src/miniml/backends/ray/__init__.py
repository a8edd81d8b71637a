"""The ``ray`` backend: the same task code on a Ray cluster (``--backend ray``; the ``backend:`` section).

- ``prepare``: readers, cleaning and splitting as Ray Data tasks (:mod:`.prepare`) → the same dataset;
- ``train``: Ray Train workers running the task's own recipe under DDP (:mod:`.train`) → the same kind of
  run, model folder and registry version;
- ``predict``: Ray Data ``map_batches`` over an actor pool (:mod:`.predict`) → the same output file.

Ray itself is imported when a method runs (:mod:`.cluster`), so a missing Ray is one clear error line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from miniml.compute import BackendConfig

if TYPE_CHECKING:
    from miniml.data.dataset import Dataset
    from miniml.data.prepare import Plan
    from miniml.tasks.base import TrainConfig
    from miniml.train.run import TrainResult


class RayBackend:
    """Runs prepare / train / predict on the Ray cluster ``section`` names."""

    name = "ray"

    def __init__(self, section: BackendConfig) -> None:
        self.section = section

    def prepare(self, plan: Plan, *, mirror: str | None = None) -> Dataset:
        from miniml.backends.ray.prepare import prepare_on_ray

        return prepare_on_ray(self.section, plan, mirror=mirror)

    def train(self, config: TrainConfig, *, resume: bool = False) -> TrainResult:
        from miniml.backends.ray.train import train_on_ray

        return train_on_ray(config.model_copy(update={"backend": self.section}), resume=resume)

    def predict(
        self, model: str | Path, input_path: Path, output_path: Path, *, batch_size: int, top_k: int | None
    ) -> int:
        from miniml.backends.ray.predict import predict_on_ray

        return predict_on_ray(
            self.section, model, input_path, output_path, batch_size=batch_size, top_k=top_k
        )

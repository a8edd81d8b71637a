"""The ``local`` backend: everything runs in this process, through the library functions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from miniml.data.dataset import Dataset
    from miniml.data.prepare import Plan
    from miniml.tasks.base import TrainConfig
    from miniml.train.run import TrainResult


class LocalBackend:
    """In-process: ``build``, ``train`` and ``predict_file`` as they are."""

    name = "local"

    def prepare(self, plan: Plan, *, mirror: str | None = None) -> Dataset:
        from miniml.data.prepare import build

        return build(plan, mirror=mirror)

    def train(self, config: TrainConfig, *, resume: bool = False) -> TrainResult:
        from miniml.train.run import train

        return train(config, resume=resume)

    def predict(
        self, model: str | Path, input_path: Path, output_path: Path, *, batch_size: int, top_k: int | None
    ) -> int:
        from miniml.evaluate.predict import predict_file

        return predict_file(model, input_path, output_path, batch_size=batch_size, top_k=top_k)

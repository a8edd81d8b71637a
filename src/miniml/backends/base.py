"""The compute backend seam: where data preparation, training and batch prediction run.

A backend takes the same validated configs as the library functions and returns the same results, so the
command line does not care where the work happens (``--backend``, the ``backend:`` section of
:mod:`miniml.compute`). ``local`` (this process) is the default; ``ray`` runs the same task code on a Ray
cluster (Ray Data for preparation and batch prediction, Ray Train workers running the task's own training
recipe). Each implements this protocol in its own module and joins the table in :mod:`miniml.backends`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from miniml.data.dataset import Dataset
    from miniml.data.prepare import Plan
    from miniml.tasks.base import TrainConfig
    from miniml.train.run import TrainResult


class Backend(Protocol):
    """Where work runs (see the module docstring)."""

    name: str

    def prepare(self, plan: Plan, *, mirror: str | None = None) -> Dataset:
        """``miniml data prepare``: the dataset a plan describes (same fingerprint, same rows everywhere)."""
        ...

    def train(self, config: TrainConfig, *, resume: bool = False) -> TrainResult:
        """``miniml train``: a tracked run that ends in a registered model version."""
        ...

    def predict(
        self, model: str | Path, input_path: Path, output_path: Path, *, batch_size: int, top_k: int | None
    ) -> int:
        """``miniml predict``: one answer per input line, in order; returns the number written."""
        ...

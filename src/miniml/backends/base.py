"""The compute backend seam: where training and batch prediction run.

A backend takes the same validated configs as the library functions and returns the same results, so the
command line does not care where the work happens (``--backend``). ``local`` (this process) is the default
and the only one shipped. A cluster backend (Ray: Ray Train workers running the task's own training recipe,
Ray Data for batch prediction) implements this protocol in one module and joins the table in
:mod:`miniml.backends`; data preparation can join the protocol the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from miniml.tasks.base import TrainConfig
    from miniml.train.run import TrainResult


class Backend(Protocol):
    """Where work runs (see the module docstring)."""

    name: str

    def train(self, config: TrainConfig, *, resume: bool = False) -> TrainResult:
        """``miniml train``: a tracked run that ends in a registered model version."""
        ...

    def predict(
        self, model: str | Path, input_path: Path, output_path: Path, *, batch_size: int, top_k: int | None
    ) -> int:
        """``miniml predict``: one answer per input line, in order; returns the number written."""
        ...

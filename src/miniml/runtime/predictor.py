"""``Predictor``: what a classifier runtime gives — texts in, float32 class probabilities out; and the checks
every user of one makes (finite scores, the warm-up check at load).

Rows are texts, columns are the model's ``info.labels`` in order. The torch and ONNX runtimes implement it
(:mod:`~miniml.runtime.torch_predictor`, :mod:`~miniml.runtime.onnx_predictor`); so do in-memory modules
under optimization (parity checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from miniml.errors import ModelError


@runtime_checkable
class Predictor(Protocol):
    """Texts → (B, C) float32 probabilities."""

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def predict_in_batches(
    predictor: Predictor, texts: Sequence[str], batch_size: int = 256, *, columns: int = 0
) -> np.ndarray:
    """(N, C) probabilities, computed ``batch_size`` texts at a time (no texts: ``(0, columns)``)."""
    parts = [predictor.predict_proba(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, columns), dtype=np.float32)


WARM_UP_TEXTS = ("warm up", "Hej, hvordan har du det i dag?", "Ünïcödé 123 !? ÆØÅ", "a " * 200)


def non_finite_rows(probs: np.ndarray) -> np.ndarray:
    """Indices of the rows holding NaN or an infinity (a model with broken weights)."""
    return np.flatnonzero(~np.isfinite(probs).all(axis=-1)) if probs.size else np.zeros(0, dtype=np.int64)


def require_finite(probs: np.ndarray, what: str) -> None:
    """Raise a ModelError naming ``what`` when any probability is NaN or infinite."""
    bad = non_finite_rows(probs)
    if len(bad):
        raise ModelError(
            f"{what}: the model's scores are not finite (NaN or infinity) for {len(bad)} of {len(probs)} "
            f"inputs (first: input {int(bad[0])})",
            hint="its weights are broken (e.g. training diverged): retrain it or restore the folder",
        )


def check_predictor(predictor: Any) -> None:
    """Warm-up check of a loaded classifier: right shape and finite scores on a few varied texts."""
    probs = predictor.predict_proba(list(WARM_UP_TEXTS))
    labels = len(predictor.info.labels)
    if probs.shape != (len(WARM_UP_TEXTS), labels):
        raise ModelError(
            f"model {predictor.info.name} returned probabilities of shape {probs.shape} for "
            f"{len(WARM_UP_TEXTS)} texts and {labels} labels; its folder is inconsistent"
        )
    require_finite(probs, f"model {predictor.info.name} ({predictor.path})")

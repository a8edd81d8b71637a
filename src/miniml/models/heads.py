"""What every classifier module returns: ``{"logits"}``, plus ``"loss"`` when labels are given."""

from __future__ import annotations

from typing import Any

from torch import nn


def classification_output(logits: Any, labels: Any, label_smoothing: float = 0.0) -> dict[str, Any]:
    """The ``{"loss", "logits"}`` dict every builder's module returns (loss only when labels are given)."""
    out: dict[str, Any] = {"logits": logits}
    if labels is not None:
        out["loss"] = nn.functional.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return out

"""Evaluation plots (matplotlib, Agg backend: no display needed): confusion matrix and training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen before pyplot loads
import numpy as np


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Row-normalized confusion matrix with raw counts in the cells."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.8 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalized)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            color = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(history: Sequence[dict[str, Any]], path: Path, metric: str = "eval_macro_f1") -> Path | None:
    """Training loss, validation loss and a validation metric against the step; None if nothing was logged."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [h for h in history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        left.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        left.plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="validation loss")
        scored = [h for h in evals if metric in h]
        right.plot([h["step"] for h in scored], [h[metric] for h in scored], "o-", color="tab:green")
    left.set_xlabel("step")
    left.set_title("loss")
    left.legend()
    right.set_xlabel("step")
    right.set_title(metric.removeprefix("eval_") + " (validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

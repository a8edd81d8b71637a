"""Short fine-tuning after pruning, to win back quality, through the training engine (``miniml.train``).

It runs while the pruning masks are still attached (``prune.unstructured_masks``): every forward uses
``weight_orig * mask``, so the pruned weights stay exactly zero and the sparsity after fine-tuning is the
sparsity before it. Head pruning removed whole rows, so there is nothing to keep there. No evaluation and no
checkpoint: a short, fixed number of steps, and the last weights are the result.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from miniml.models.featurizer import Featurizer
from miniml.optimize.config import FinetuneSettings
from miniml.tasks.classification import ClassificationConfig, ClassificationRecipe, collate, examples
from miniml.train.engine import make_trainer

LOSS_EXAMPLES = 512  # the loss before/after is measured on at most this many training examples


def training_frame(frame: pd.DataFrame, settings: FinetuneSettings) -> pd.DataFrame:
    """A seeded sample of the split, as many rows as the steps can use (at most the whole split)."""
    wanted = settings.steps * settings.batch_size
    return frame if wanted >= len(frame) else frame.sample(n=wanted, random_state=settings.seed)


def mean_loss(module: nn.Module, featurizer: Featurizer, rows: list[Any]) -> float:
    """Average training loss of ``module`` on ``examples`` (eval mode: no dropout)."""
    module.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(rows), 64):
            chunk = rows[i : i + 64]
            loss = module(**collate(featurizer, chunk))["loss"]
            total, count = total + float(loss) * len(chunk), count + len(chunk)
    return total / count if count else 0.0


def finetune(
    module: nn.Module,
    featurizer: Featurizer,
    spec: Any,
    labels: Sequence[str],
    frame: pd.DataFrame,
    settings: FinetuneSettings,
) -> dict[str, Any]:
    """Train ``module`` in place for ``settings.steps`` steps on ``frame``; returns the facts of the step."""
    train = training_frame(frame, settings)
    rows = examples(train, featurizer, labels)
    sparse = bool(getattr(spec, "sparse", False))
    config = ClassificationConfig.model_validate(
        {
            "model_name": "finetune",
            "dataset": "-",
            "model": spec.model_dump(mode="json"),
            "max_steps": settings.steps,
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "optimizer": settings.optimizer or ("adagrad" if sparse else "adamw"),
            "lr_scheduler": "constant",
            "early_stopping_patience": None,
            "logging_steps": max(1, settings.steps),
            "seed": settings.seed,
            "register_model": False,
        }
    )
    probe = rows[:LOSS_EXAMPLES]
    before = mean_loss(module, featurizer, probe)
    recipe = ClassificationRecipe(module, featurizer, config, list(labels), train, [])
    recipe.train_examples = rows  # encoded above (the loss probe uses them)
    with tempfile.TemporaryDirectory(prefix="miniml-finetune-") as tmp:
        trainer = make_trainer(config, recipe, Path(tmp), checkpoints=False)
        trainer.train()
    module.to("cpu").eval()
    return {
        "step": "finetune",
        "steps": settings.steps,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "optimizer": config.optimizer,
        "split": settings.split,
        "examples": len(rows),
        "train_loss_before": before,
        "train_loss_after": mean_loss(module, featurizer, probe),
    }

"""The one training engine: the ``transformers`` Trainer, set up from a TrainConfig for any task and model.

Every task hands it a :class:`~miniml.tasks.base.TrainingRecipe` (model, examples, collator, metric and loss
hooks): from-scratch modules, pretrained encoders and generative models go through the same Trainer. It gives
us gradient accumulation, LR schedules, mixed precision on GPU, evaluation, best-checkpoint selection, early
stopping and resumable checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from miniml.tasks.base import TrainConfig, TrainingRecipe
from miniml.train.callbacks import CheckpointSeal, RichProgress

log = logging.getLogger(__name__)
_NO_DECAY = ("bias", "norm", "layernorm", "layer_norm")


class ExampleDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """A list of per-example feature dicts (each with ``input_ids``, so length grouping can read them)."""

    def __init__(self, examples: Sequence[dict[str, Any]]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.examples[index]


def _sparse_aware_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    parts = [(g.coalesce().values() if g.is_sparse else g).float().pow(2).sum() for g in grads]
    return torch.stack(parts).sum().sqrt() if parts else torch.tensor(0.0)


class MinimlTrainer(Trainer):
    """The Trainer, able to clip and log the gradient norm of sparse embedding gradients.

    ``torch.nn.utils.clip_grad_norm_`` has no sparse kernel, and the Trainer computes the norm on every step;
    sparse gradients make ``hashing_bag`` training an order of magnitude faster, so we handle them here.
    """

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Train with sparse-tensor invariant checks explicitly off.

        Sparse Adagrad builds a sparse tensor at every step, and torch warns ("Sparse invariant checks are
        implicitly disabled") unless the checks are switched on or off explicitly. Off is torch's default
        and right here: those tensors come from torch's own optimizer, and checking them costs time at every
        step. Opting out explicitly keeps ``miniml train`` output clean without hiding other warnings.
        """
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            return super().train(*args, **kwargs)

    def _sparse_grads(self, model: nn.Module) -> list[torch.Tensor] | None:
        """The gradients, sparse ones coalesced in place (once: the norm and the optimizer both need it)."""
        grads = []
        for param in model.parameters():
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse and not grad.is_coalesced():
                grad = param.grad = grad.coalesce()
            grads.append(grad)
        return grads if any(g.is_sparse for g in grads) else None

    def _clip_grad_norm(self, model: nn.Module) -> Any:
        grads = self._sparse_grads(model)
        if grads is None:
            return super()._clip_grad_norm(model)
        norm = _sparse_aware_norm(grads)
        scale = float(self.args.max_grad_norm) / (float(norm) + 1e-6)
        if scale < 1.0:
            for g in grads:
                g.mul_(scale)
        return norm

    def _get_grad_norm(self, model: nn.Module, grad_norm: Any = None) -> Any:
        grads = self._sparse_grads(model) if grad_norm is None else None
        return _sparse_aware_norm(grads) if grads is not None else super()._get_grad_norm(model, grad_norm)


def precision_flags(precision: str) -> dict[str, Any]:
    """fp16/bf16 only when CUDA is present; on CPU everything runs in fp32."""
    if not torch.cuda.is_available():
        if precision in ("fp16", "bf16"):
            log.warning("precision %s needs a CUDA GPU; training in fp32", precision)
        return {}
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(
    config: TrainConfig, output_dir: Path, *, checkpoints: bool = True
) -> TrainingArguments:
    """Translate the config into TrainingArguments (evaluation and checkpoints at the same cadence).

    ``checkpoints=False`` trains straight through: no evaluation, no checkpoint, the last weights are kept
    (short fine-tunes such as ``miniml optimize``'s recovery after pruning).
    """
    cadence: dict[str, Any] = {"eval_strategy": "epoch", "save_strategy": "epoch"}
    if not checkpoints:
        cadence = {"eval_strategy": "no", "save_strategy": "no"}
    elif config.eval_interval:
        cadence = {
            "eval_strategy": "steps",
            "eval_steps": config.eval_interval,
            "save_strategy": "steps",
            "save_steps": config.checkpoint_interval,
        }
    metric = config.metric_for_best.removeprefix("eval_")
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a share of the total steps in transformers 5
        lr_scheduler_type=config.lr_scheduler,
        max_grad_norm=config.max_grad_norm,
        label_smoothing_factor=config.label_smoothing,
        logging_steps=config.logging_steps,
        save_total_limit=config.keep_checkpoints,
        load_best_model_at_end=checkpoints,
        metric_for_best_model=metric,
        greater_is_better="loss" not in metric,
        restore_callback_states_from_checkpoint=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=config.dataloader_workers,
        **cadence,
        **precision_flags(config.precision),
    )


def param_groups(module: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """No weight decay on biases and norms; per-parameter LR factors from specs that have ``lr_scale``."""
    spec = config.model
    num_layers = int(getattr(getattr(module, "config", None), "num_hidden_layers", 0) or 0)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        sparse = getattr(spec, "sparse", False) and name.startswith("embedding")  # sparse grads: no decay
        wd = 0.0 if sparse or any(tag in name.lower() for tag in _NO_DECAY) else config.weight_decay
        lr = config.learning_rate
        if hasattr(spec, "lr_scale"):
            lr *= spec.lr_scale(name, num_layers)
        groups.setdefault((lr, wd), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def build_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(module, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=config.learning_rate)
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def make_trainer(
    config: TrainConfig,
    recipe: TrainingRecipe,
    output_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
    *,
    checkpoints: bool = True,
    train_dataset: Any = None,
    **overrides: Any,
) -> Trainer:
    """The one Trainer setup, for every task: the recipe's model, examples, collator, metric and loss hooks,
    with dynamic padding, early stopping, sealed checkpoints and a progress bar.

    ``train_dataset`` replaces the recipe's examples (a cluster worker's data shard, already batched);
    ``overrides`` are TrainingArguments that differ there (``max_steps``, the per-worker batch size).
    """
    args = training_arguments(config, output_dir, checkpoints=checkpoints)
    if overrides:
        args = dataclasses.replace(args, **overrides)
    extra: list[TrainerCallback] = [
        CheckpointSeal(),
        RichProgress(config.batch_size * config.gradient_accumulation_steps),
    ]
    if config.early_stopping_patience and checkpoints:
        extra.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = MinimlTrainer(
        model=recipe.model,
        args=args,
        data_collator=recipe.collate,
        train_dataset=ExampleDataset(recipe.train_examples) if train_dataset is None else train_dataset,
        eval_dataset=ExampleDataset(recipe.eval_examples),
        compute_metrics=recipe.compute_metrics,
        compute_loss_func=recipe.compute_loss,
        optimizers=(build_optimizer(recipe.model, config), None),
        callbacks=[*extra, *callbacks],
    )
    trainer.remove_callback(
        PrinterCallback
    )  # it prints every log dict to stdout; the progress bar shows them
    return trainer

"""The ``miniml train`` config: one schema, every key documented and constrained.

Training hyper-parameters sit at the top level (``epochs``, ``batch_size``, ...; the environment form is
``MINIML_TRAIN__EPOCHS=3``); the architecture is the ``model:`` section, chosen by its ``kind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from miniml.config import StepConfig
from miniml.models import ModelSpec
from miniml.train.augment import ShortCrops

Scheduler = Literal[
    "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
]


class TrainConfig(StepConfig):
    """What ``miniml train CONFIG.yaml`` reads."""

    env_section: ClassVar[str] = "train"

    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="registry name of the model")
    dataset: str = Field(
        min_length=1,
        description="prepared dataset: NAME, NAME/FINGERPRINT, a folder or s3://BUCKET/PREFIX/NAME/FINGERPRINT",
    )
    task: Literal["classification"] = "classification"
    model: Annotated[ModelSpec, Field(discriminator="kind")]

    # optimization
    epochs: float = Field(3.0, gt=0, description="passes over the training split")
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many optimizer steps (overrides epochs)"
    )
    batch_size: int = Field(32, ge=1, le=65536)
    eval_batch_size: int = Field(128, ge=1, le=65536)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    optimizer: Literal["adamw", "sgd", "adagrad"] = "adamw"
    learning_rate: float = Field(5e-5, gt=0, le=10)
    weight_decay: float = Field(0.01, ge=0, le=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps with linear LR warm-up")
    lr_scheduler: Scheduler = "linear"
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping (0: off)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ordinal_alpha: float | None = Field(
        None,
        gt=0,
        le=100,
        description="ordered labels (stars, grades): SORD soft targets exp(-alpha·(i-j)²) over label ranks",
    )

    # evaluation, checkpoints, early stopping
    eval_steps: int | None = Field(None, ge=1, description="validate every N steps (None: every epoch)")
    checkpoint_steps: int | None = Field(None, ge=1, description="checkpoint every N steps (None: with eval)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (the best is always kept)")
    metric_for_best: str = Field("macro_f1", description="validation metric that picks the best checkpoint")
    early_stopping_patience: int | None = Field(3, ge=1, description="evaluations without improvement")
    logging_steps: int = Field(20, ge=1)

    # batching
    group_by_length: bool = Field(True, description="batch examples of similar length together")
    pad_to_max: bool = Field(False, description="pad every batch to max_length instead of its longest")
    max_train_examples: int | None = Field(None, ge=1, description="use a seeded sample of the train split")
    short_crops: ShortCrops | None = Field(
        None, description="classification: add random runs of a few words of each training text"
    )
    temperature_scaling: bool = Field(
        True,
        description="classification: fit a softmax temperature on validation; kept if it lowers the ECE",
    )

    # runtime
    seed: int = 42
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16/fp16 on GPU only"
    )
    threads: int | None = Field(None, ge=1, le=1024, description="torch intra-op threads")
    dataloader_workers: int = Field(0, ge=0, le=64)

    # tracking and registry
    experiment: str | None = Field(None, description="MLflow experiment (default: model_name)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: embedded store)")
    register_model: bool = Field(True, description="register the model version after a successful run")
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_intervals(self) -> TrainConfig:
        if self.eval_steps and self.checkpoint_steps and self.checkpoint_steps % self.eval_steps:
            raise ValueError(
                "checkpoint_steps must be a multiple of eval_steps (the best one is picked at evaluations)"
            )
        if self.ordinal_alpha is not None and self.label_smoothing:
            raise ValueError("use label_smoothing or ordinal_alpha (both soften the targets), not both")
        if getattr(self.model, "sparse", False) and self.optimizer == "adamw":
            raise ValueError(
                "model.sparse needs optimizer sgd or adagrad (AdamW cannot take sparse gradients)"
            )
        return self

    @property
    def eval_interval(self) -> int | None:
        """Steps between validations (None: once per epoch)."""
        return self.eval_steps or self.checkpoint_steps

    @property
    def checkpoint_interval(self) -> int | None:
        """Steps between checkpoints (None: once per epoch)."""
        return self.checkpoint_steps or self.eval_steps

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model_name


def train_config_schema(task: str) -> type[TrainConfig]:
    """The train config schema for ``task`` (the union over ``task``: classification, seq2seq, causal_lm)."""
    if task == "classification":
        return TrainConfig
    from miniml.train.generative import GENERATIVE_CONFIGS

    if task not in GENERATIVE_CONFIGS:
        from miniml.errors import ConfigError

        known = ", ".join(["classification", *GENERATIVE_CONFIGS])
        raise ConfigError(f"invalid config: task: unknown task {task!r}", hint=f"use one of {known}")
    return GENERATIVE_CONFIGS[task]


def load_train_config(path: Path | str | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a train config with the schema its ``task`` key selects (file < environment < overrides)."""
    from miniml.config import deep_merge, env_overrides, load_config, parse_overrides, read_yaml

    data = read_yaml(Path(path)) if path is not None else {}
    data = deep_merge(deep_merge(data, env_overrides(TrainConfig.env_section)), parse_overrides(overrides))
    return load_config(train_config_schema(str(data.get("task", "classification"))), path, overrides)

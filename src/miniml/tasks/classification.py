"""Task ``classification``: a text in, one label of a fixed set out, with probabilities over all labels.

Examples become tensors through the featurizer the model's spec makes (hashing n-grams, a vocabulary, a
Hugging Face tokenizer: :mod:`miniml.models`); the label is the class id. Validation reports accuracy and
macro/weighted/per-class precision, recall and F1; the best checkpoint is picked on ``metric_for_best``.
Model folders hold the module's weights, the featurizer and the spec (:mod:`miniml.models.folder`) and run
on the ``torch`` or ``onnx`` runtime. Outputs become answers through ``top_k_answers``, the one top-k
decoder (:mod:`~miniml.tasks.classification_serving`): ``{"label", "score", "top_k": [{"label", "score"},
...]}`` for ``miniml predict`` and HTTP alike.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from miniml.data.augment import ShortCrops, add_short_crops
from miniml.errors import ConfigError, DataError
from miniml.io import atomic_dir
from miniml.metrics.calibration import temperature_fit
from miniml.metrics.classification import ClassificationMetrics, classification_metrics
from miniml.metrics.report import write_report
from miniml.modelfolder import ModelInfo, write_info
from miniml.models.featurizer import Featurizer
from miniml.models.folder import architecture_of, save_model_folder
from miniml.models.hf_folder import (
    LABEL_WEIGHTS_REASON,
    TEMPERATURE_REASON,
    fold_temperature,
    refuse_transformers,
)
from miniml.models.registry import ModelSpec, get_builder, load_featurizer
from miniml.monitor.build import profile_of
from miniml.monitor.profile import write_profile
from miniml.runtime.predictor import predict_in_batches, require_finite
from miniml.runtime.table import open_runtime
from miniml.tasks.base import EvaluateOptions, OptimizeSupport, TrainConfig, TrainingContext
from miniml.tasks.classification_card import CARD
from miniml.tasks.classification_serving import ClassificationHandler, top_k_answers

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel

log = logging.getLogger("miniml.train")


class ClassificationConfig(TrainConfig):
    """``task: classification`` (the default): the architecture is ``model:``, chosen by its ``kind``."""

    task: Literal["classification"] = "classification"
    model: Annotated[ModelSpec, Field(discriminator="kind")]
    ordinal_alpha: float | None = Field(
        None,
        gt=0,
        le=100,
        description="ordered labels (stars, grades): SORD soft targets exp(-alpha·(i-j)²) over label ranks",
    )
    short_crops: ShortCrops | None = Field(
        None, description="add random runs of a few words of each training text"
    )
    temperature_scaling: bool = Field(
        True, description="fit a softmax temperature on validation; kept if it lowers the ECE"
    )
    label_weights: dict[str, Annotated[float, Field(gt=0, le=1000)]] = Field(
        default_factory=dict,
        description="multiply these labels' predicted probabilities (then renormalise) wherever the model "
        "predicts: a prior shift, e.g. {other: 2} for an open-set label that covers more than training saw",
    )

    @model_validator(mode="after")
    def _check_classification(self) -> ClassificationConfig:
        if self.ordinal_alpha is not None and self.label_smoothing:
            raise ValueError("use label_smoothing or ordinal_alpha (both soften the targets), not both")
        if getattr(self.model, "sparse", False) and self.optimizer == "adamw":
            raise ValueError(
                "model.sparse needs optimizer sgd or adagrad (AdamW cannot take sparse gradients)"
            )
        return self


# ---------------------------------------------------------------- labels, answers
def label_ids(labels: Sequence[str], targets: Sequence[Any]) -> np.ndarray:
    """Targets → class ids; a target outside the label set is a DataError naming it."""
    index = {label: i for i, label in enumerate(labels)}
    try:
        return np.array([index[str(t)] for t in targets], dtype=np.int64)
    except KeyError as err:
        raise DataError(
            f"target {err.args[0]!r} is not one of the model's labels {list(labels)}",
            hint="train on a dataset with the same label set",
        ) from None


def validation_metric_names(labels: Sequence[str]) -> set[str]:
    """What validation reports: ``metric_for_best`` must be one of these."""
    known = {"loss", "accuracy"} | {
        f"{a}_{m}" for a in ("macro", "weighted") for m in ("precision", "recall", "f1")
    }
    return known | {f"{m}/{label}" for m in ("precision", "recall", "f1") for label in labels}


# ---------------------------------------------------------------- ordinal targets (SORD)
def label_ranks(labels: Sequence[str]) -> list[float]:
    """Each label's place on its scale: its value when every label is a number, else its position."""
    try:
        return [float(label) for label in labels]
    except ValueError:
        return [float(i) for i in range(len(labels))]


def ordinal_targets(labels: Sequence[str], alpha: float) -> torch.Tensor:
    """Row i: the soft target for true label i, ``softmax_j(-alpha·(r_i - r_j)²)`` over label ranks ``r``.

    SORD (Díaz & Marathe, "Soft Labels for Ordinal Regression", CVPR 2019): a 4-star review predicted as 5
    is penalised less than one predicted as 1. The argmax of every row stays its own label.
    """
    ranks = torch.tensor(label_ranks(labels), dtype=torch.float32)
    return torch.softmax(-alpha * (ranks[:, None] - ranks[None, :]) ** 2, dim=1)


def soft_target_loss(targets: torch.Tensor) -> Any:
    """A Trainer ``compute_loss_func``: cross-entropy against ``targets[label]`` rows."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        soft = targets.to(device=logits.device, dtype=logits.dtype)[labels]
        return -(soft * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()

    return loss


# ---------------------------------------------------------------- examples and batches
def examples(frame: pd.DataFrame, featurizer: Featurizer, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Dataset rows → per-example features with the class id under ``labels``."""
    ids = label_ids(labels, frame["target"].tolist())
    features = featurizer.encode(frame["input"].astype(str).tolist())
    for feature, label in zip(features, ids, strict=True):
        feature["labels"] = int(label)
    return features


def collate(
    featurizer: Featurizer, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False
) -> dict[str, Any]:
    """Per-example features → one batch of tensors (model inputs + ``labels``)."""
    inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
    batch = featurizer.collate(inputs, pad_to_max=pad_to_max)
    if features and "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.int64)
    return batch


def metrics_from_logits(labels: Sequence[str], prediction: Any) -> dict[str, float]:
    """Validation metrics from a Trainer ``EvalPrediction`` (logits → argmax)."""
    logits = (
        prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    )
    y_pred = np.asarray(logits).argmax(axis=-1)
    return classification_metrics(np.asarray(prediction.label_ids), y_pred, list(labels)).summary()


class ClassificationRecipe:
    """One training run of a classifier: module, featurizer, examples, and how it is saved."""

    def __init__(
        self,
        model: torch.nn.Module,
        featurizer: Featurizer,
        config: ClassificationConfig,
        labels: list[str],
        train_frame: pd.DataFrame,
        eval_examples: list[dict[str, Any]],
        validation: pd.DataFrame | None = None,
        profile: tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]] | None = None,
    ) -> None:
        self.model, self.featurizer, self.spec, self.labels = model, featurizer, config.model, labels
        self.train_frame, self.eval_examples = train_frame, eval_examples
        self.pad_to_max = config.pad_to_max
        self.label_weights = dict(config.label_weights)
        unknown = sorted(set(self.label_weights) - set(self.labels))
        if unknown:
            raise ConfigError(
                f"label_weights names {unknown}, which are not labels of this dataset {self.labels}",
                hint="use the dataset's labels as the keys of label_weights",
            )
        # temperature scaling is fitted on these rows after training (None: not at all)
        self.validation = validation if config.temperature_scaling else None
        # train and validation rows + dataset of the drift reference profile (None: no profile)
        self.profile = profile
        self.compute_metrics = functools.partial(metrics_from_logits, labels)
        alpha = config.ordinal_alpha
        self.compute_loss = soft_target_loss(ordinal_targets(labels, alpha)) if alpha is not None else None

    @functools.cached_property
    def train_examples(self) -> list[dict[str, Any]]:
        """Encoded on first use: a cluster worker encodes only its shard (:meth:`encode`), never this."""
        return self.encode(self.train_frame)

    def encode(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        return examples(frame, self.featurizer, self.labels)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return collate(self.featurizer, features, pad_to_max=self.pad_to_max)

    def train_context(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def save(self, folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        info = ModelInfo.model_validate(
            {
                **common,
                "task": ClassificationTask.name,
                "architecture": architecture_of(self.spec),
                "labels": self.labels,
                "preprocessing": self.featurizer.preprocessing(),
                "base_model": getattr(self.spec, "name_or_path", None),
            }
        )
        save_model_folder(folder, self.model, self.featurizer, self.spec, info)
        info = self.fit_temperature(folder, info)
        info = self.apply_label_weights(folder, info)
        self.write_profile(folder, info)
        return info

    def write_profile(self, folder: Path, info: ModelInfo) -> None:
        """The drift reference profile (``reference.json``, :mod:`miniml.monitor.profile`) of the trained
        model, then ``miniml.json`` again so that its manifest lists the profile."""
        if self.profile is None or self.profile[1].empty:
            return
        train, validation, dataset = self.profile
        predictor = open_runtime(info.runtime, folder, info)
        write_profile(
            folder,
            profile_of(
                predictor,
                train["input"].astype(str).tolist(),
                validation["input"].astype(str).tolist(),
                dataset,
            ),
        )
        write_info(folder, info)

    def fit_temperature(self, folder: Path, info: ModelInfo) -> ModelInfo:
        """Temperature scaling on the validation split: recorded in lineage, applied if it lowers the ECE."""
        frame = self.validation
        if frame is None or frame.empty:
            return info
        predictor = open_runtime(info.runtime, folder, info)
        probs = predict_in_batches(predictor, frame["input"].astype(str).tolist(), columns=len(self.labels))
        fit = temperature_fit(probs, label_ids(self.labels, frame["target"].tolist()))
        log.info("temperature scaling on validation: %s", fit)
        update: dict[str, Any] = {"lineage": {**info.lineage, "temperature_scaling": fit}}
        if fit["kept"] and info.architecture == "hf" and fold_temperature(folder, float(fit["temperature"])):
            fit["folded_into_weights"] = True  # plain transformers then gives miniml's probabilities too
        elif fit["kept"]:
            update["logit_temperature"] = fit["temperature"]
        info = info.model_copy(update=update)
        if info.architecture == "hf" and info.logit_temperature != 1.0:
            refuse_transformers(folder, TEMPERATURE_REASON)
        write_info(folder, info)
        return info

    def apply_label_weights(self, folder: Path, info: ModelInfo) -> ModelInfo:
        """Record ``label_weights`` in ``miniml.json`` (every runtime applies them after the temperature)."""
        weights = {k: float(v) for k, v in self.label_weights.items() if v != 1.0}
        if not weights:
            return info
        info = info.model_copy(update={"label_weights": weights})
        if info.architecture == "hf":
            refuse_transformers(folder, LABEL_WEIGHTS_REASON)
        write_info(folder, info)
        return info


class ClassificationEvaluation:
    """A classifier's scores on a split (``details``: every figure, confusion matrix included)."""

    def __init__(self, details: ClassificationMetrics) -> None:
        self.details = details
        self.metrics = details.summary()

    def write(
        self, out_dir: Path, context: Mapping[str, Any], history: Sequence[dict[str, Any]] | None = None
    ) -> Path:
        return write_report(out_dir, self.details, dict(context), history)


# ---------------------------------------------------------------- the task
def dataset_ref(context: TrainingContext) -> dict[str, Any]:
    return {"name": context.dataset.name, "fingerprint": context.dataset.fingerprint}


class ClassificationTask:
    """Task ``classification`` (see the module docstring)."""

    name = "classification"
    config = ClassificationConfig
    card = CARD
    predict_batch_cap = None
    monitored = True  # reference profile, drift windows, feedback, canary and shadow (miniml.monitor)
    optimize = OptimizeSupport(
        family="probabilities",
        onnx=True,
        int8=True,
        calibration=True,
        prune_methods=("global_unstructured", "heads"),
        finetune=True,
        quality_metric="accuracy",
    )

    def labels(self, config: Any, frames: Mapping[str, pd.DataFrame]) -> list[str]:
        """Every target of every split, sorted; a pretrained head with named labels keeps its order."""
        seen = sorted({str(t) for frame in frames.values() for t in frame["target"].tolist()})
        if len(seen) < 2:
            raise DataError(
                f"dataset {config.dataset} has {len(seen)} label(s); classification needs 2 or more"
            )
        check = getattr(config.model, "check_labels", None)
        return check(seen) if check else seen

    def check_config(self, config: Any, labels: Sequence[str]) -> None:
        """``metric_for_best`` must be a validation metric this task reports (checked before any training)."""
        wanted = config.metric_for_best.removeprefix("eval_")
        if wanted not in validation_metric_names(labels):
            raise ConfigError(
                f"metric_for_best: {wanted!r} is not a validation metric of this task",
                hint=f"use loss, accuracy, macro_f1, weighted_f1 or f1/<label> ({', '.join(labels)})",
            )

    def recipe(self, context: TrainingContext) -> ClassificationRecipe:
        config: ClassificationConfig = context.config
        featurizer = self.featurizer(context)
        module = get_builder(config.model.kind)(config.model, context.labels, featurizer)
        return ClassificationRecipe(
            module,
            featurizer,
            config,
            context.labels,
            self.augment(config, context.train_frame),
            examples(context.frames["validation"], featurizer, context.labels),
            context.frames["validation"],
            (context.train_frame, context.frames["validation"], dataset_ref(context)),
        )

    def augment(self, config: Any, frame: pd.DataFrame, *, seed: int | None = None) -> pd.DataFrame:
        """The training rows plus their ``short_crops`` (drawn from ``seed``, default the config's)."""
        if config.short_crops is None:
            return frame
        return add_short_crops(frame, config.short_crops, config.seed if seed is None else seed)

    def featurizer(self, context: TrainingContext) -> Featurizer:
        """Fit (or, when resuming, reload) the featurizer; it is kept in the run folder for resumes."""
        folder = context.work_dir / "featurizer"
        if context.resume and folder.is_dir():
            return load_featurizer(folder, context.preprocessing)
        texts = context.train_frame["input"].astype(str).tolist()
        featurizer = context.config.model.make_featurizer(texts)
        with atomic_dir(folder, replace=True) as tmp:
            featurizer.save(tmp)
        context.remember(featurizer.preprocessing())
        return featurizer

    def test_options(self, config: Any) -> EvaluateOptions:
        return EvaluateOptions(batch_size=256)

    def describe(self, config: Any) -> dict[str, str]:
        return {"miniml.model_kind": str(config.model.kind)}

    # ---------------------------------------------------------------- inference
    def load(self, folder: Path, info: ModelInfo, *, device: str | None, threads: int | None) -> Any:
        return open_runtime(info.runtime, folder, info, device=device, threads=threads)

    def evaluate(
        self, model: LoadedModel, frame: pd.DataFrame, options: EvaluateOptions
    ) -> ClassificationEvaluation:
        """Metrics on ``frame``; a target outside the model's label set is a DataError."""
        if options.limit:
            frame = frame.head(options.limit)
        labels = model.info.labels
        y_true = label_ids(labels, frame["target"].tolist())
        texts = frame["input"].astype(str).tolist()
        probs = predict_in_batches(model.predictor, texts, max(options.batch_size, 1), columns=len(labels))
        require_finite(probs, options.source)  # argmax of NaN rows would still score
        if options.progress is not None:
            options.progress(len(texts))
        details = classification_metrics(y_true, probs.argmax(axis=-1), labels, texts=texts, probs=probs)
        return ClassificationEvaluation(details)

    def predict(
        self, model: LoadedModel, texts: list[str], *, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        probs = model.predictor.predict_proba(texts)
        require_finite(probs, f"model {model.name}")  # never NaN in an answer
        return top_k_answers(probs, model.info.labels, top_k)

    # ---------------------------------------------------------------- serving
    def handler(self, batching: Any) -> ClassificationHandler:
        return ClassificationHandler(micro_batch_size=getattr(batching, "micro_batch_size", None))

    def serve_workers(self, requested: int) -> int:
        return requested  # small classifiers on CPU: one-thread replicas can beat one model on all cores

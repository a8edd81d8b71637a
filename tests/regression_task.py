"""A task that miniml does not ship, in one module: ``regression`` (a text in, one number out).

It proves the task protocol (``miniml.tasks.base.Task``): registered with ``register_task``, it trains with
the shared session and engine, is tracked and registered, evaluated, batch-predicted and served, with no
edit anywhere else. It reuses what exists (the ``hashing_bag`` builder with one output, the model folder
format) and brings what is its own: a float target, a squared-error loss, MAE / RMSE / R², a runtime that
returns raw values instead of probabilities, ``{"value"}`` answers and serving hooks for ``/predict``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import orjson
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import ConfigError, DataError
from miniml.io import atomic_write_json, atomic_write_text
from miniml.modelcard import CardText
from miniml.modelfolder import ModelInfo
from miniml.models.folder import load_model_folder, save_model_folder
from miniml.models.hashing_bag import HashingBagSpec
from miniml.models.registry import get_builder
from miniml.tasks.base import EvaluateOptions, OptimizeSupport, TrainConfig, TrainingContext
from miniml.tasks.serving import Decoded, Float32Codec, check_sizes, normalize_text, parse_body

NAME = "regression"


class RegressionConfig(TrainConfig):
    """``task: regression``: a hashing bag with one output, trained on the squared error."""

    task: Literal["regression"] = NAME
    model: HashingBagSpec
    metric_for_best: str = Field("loss", description="validation loss (mean squared error)")


def targets(frame: pd.DataFrame) -> np.ndarray:
    try:
        return frame["target"].astype(float).to_numpy(dtype=np.float32)
    except ValueError:
        raise DataError(
            "regression targets must be numbers", hint="check the dataset's target column"
        ) from None


def squared_error(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    return torch.nn.functional.mse_loss(outputs["logits"][:, 0], labels.float())


def scores(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    error = predicted - true
    spread = float(((true - true.mean()) ** 2).sum()) if len(true) else 0.0
    return {
        "mae": float(np.abs(error).mean()) if len(true) else 0.0,
        "rmse": float(np.sqrt((error**2).mean())) if len(true) else 0.0,
        "r2": 1.0 - float((error**2).sum()) / spread if spread else 0.0,
    }


class RegressionRecipe:
    """The training run's model, examples and hooks."""

    compute_loss = staticmethod(squared_error)

    def __init__(self, config: RegressionConfig, featurizer: Any, frames: Mapping[str, pd.DataFrame]) -> None:
        self.spec, self.featurizer = config.model, featurizer
        self.model = get_builder("hashing_bag")(config.model, ["value"], featurizer)
        self.train_examples = self.examples(frames["train"])
        self.eval_examples = self.examples(frames["validation"])

    def examples(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        features = self.featurizer.encode(frame["input"].astype(str).tolist())
        for feature, value in zip(features, targets(frame), strict=True):
            feature["labels"] = float(value)
        return features

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.featurizer.collate([{k: v for k, v in f.items() if k != "labels"} for f in features])
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return dict(batch)

    @staticmethod
    def compute_metrics(prediction: Any) -> dict[str, float]:
        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        return scores(np.asarray(logits)[:, 0], np.asarray(prediction.label_ids, dtype=np.float32))

    def train_context(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def save(self, folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        info = ModelInfo.model_validate(
            {
                **common,
                "task": NAME,
                "architecture": "hashing_bag",
                "labels": ["value"],
                "preprocessing": self.featurizer.preprocessing(),
            }
        )
        save_model_folder(folder, self.model, self.featurizer, self.spec, info)
        return info


class ValuePredictor:
    """This task's own runtime: the module's raw output, one float per text."""

    def __init__(self, folder: Path) -> None:
        loaded = load_model_folder(folder)
        self.info, self.module, self.featurizer = loaded.info, loaded.module, loaded.featurizer
        self._lock = threading.Lock()

    def predict_values(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        with self._lock, torch.inference_mode():
            return (
                self.module(**self.featurizer.batch(list(texts)))["logits"][:, 0].numpy().astype(np.float32)
            )


class RegressionEvaluation:
    def __init__(self, metrics: dict[str, float], count: int) -> None:
        self.metrics, self.count = metrics, count

    def write(
        self, out_dir: Path, context: Mapping[str, Any], history: Sequence[dict[str, Any]] | None = None
    ) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "metrics.json", {**context, "count": self.count, "metrics": self.metrics})
        rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in self.metrics.items())
        atomic_write_text(out_dir / "report.md", f"# Evaluation\n\n| metric | value |\n|---|---|\n{rows}\n")
        return out_dir


class ValuesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str] = Field(min_length=1)


class RegressionHandler:
    """Serving hooks: ``POST /v1/models/{name}/predict`` → ``{"predictions": [{"value"}]}``."""

    route: ClassVar[str] = "predict"
    codec = Float32Codec()

    def decode_request(self, body: bytes, limits: Any) -> Decoded[str]:
        request = parse_body(ValuesRequest, body)
        chars = check_sizes(request.inputs, limits)
        return Decoded([normalize_text(t) for t in request.inputs], None, chars)

    def cache_key(self, item: str) -> str | None:
        return item

    def predict(self, model: Any, items: list[str]) -> list[np.ndarray]:
        return [np.array([v], dtype=np.float32) for v in model.predictor.predict_values(items)]

    def encode_response(self, model: Any, outputs: list[np.ndarray], params: Any) -> bytes:
        predictions = [{"value": round(float(v[0]), 6)} for v in outputs]
        return orjson.dumps({"model": model.name, "version": model.version, "predictions": predictions})

    def top_labels(self, model: Any, outputs: list[np.ndarray]) -> list[str]:
        return []

    def warm_up(self, model: Any) -> None:
        model.predictor.predict_values(["warm up"])


class RegressionTask:
    """The ``regression`` task (see the module docstring)."""

    name = NAME
    config = RegressionConfig
    optimize = OptimizeSupport()  # nothing: ``miniml optimize`` refuses it with one line
    card = CardText(words="Text regression (one number per text)")
    predict_batch_cap = None
    monitored = False  # no drift window, feedback nor rollouts

    def labels(self, config: Any, frames: Mapping[str, pd.DataFrame]) -> list[str]:
        for frame in frames.values():
            targets(frame)  # numbers, or one clear DataError
        return []

    def check_config(self, config: Any, labels: Sequence[str]) -> None:
        if config.metric_for_best.removeprefix("eval_") not in {"loss", "mae", "rmse"}:
            raise ConfigError(f"metric_for_best: {config.metric_for_best!r} is not a regression metric")

    def recipe(self, context: TrainingContext) -> RegressionRecipe:
        featurizer = context.config.model.make_featurizer([])
        context.remember(featurizer.preprocessing())
        return RegressionRecipe(context.config, featurizer, {**context.frames, "train": context.train_frame})

    def test_options(self, config: Any) -> EvaluateOptions:
        return EvaluateOptions(batch_size=256)

    def describe(self, config: Any) -> dict[str, str]:
        return {"miniml.model_kind": config.model.kind}

    def load(
        self, folder: Path, info: ModelInfo, *, device: str | None, threads: int | None
    ) -> ValuePredictor:
        if threads:
            torch.set_num_threads(threads)
        return ValuePredictor(folder)

    def evaluate(self, model: Any, frame: pd.DataFrame, options: EvaluateOptions) -> RegressionEvaluation:
        frame = frame.head(options.limit) if options.limit else frame
        predicted = model.predictor.predict_values(frame["input"].astype(str).tolist())
        if options.progress is not None:
            options.progress(len(frame))
        return RegressionEvaluation(scores(predicted, targets(frame)), len(frame))

    def predict(self, model: Any, texts: list[str], *, top_k: int | None = None) -> list[dict[str, Any]]:
        return [{"value": round(float(v), 6)} for v in model.predictor.predict_values(texts)]

    def handler(self, batching: Any) -> RegressionHandler:
        return RegressionHandler()

    def serve_workers(self, requested: int) -> int:
        return requested

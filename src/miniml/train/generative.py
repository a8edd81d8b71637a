"""Training seq2seq and causal-LM models with the shared engine: their train configs and session.

The configs are the classification ``TrainConfig`` with ``task`` and ``model`` swapped for the generative
task's (the union over ``task`` is picked by ``train.config.load_train_config``); everything else —
optimizer, schedule, evaluation cadence, checkpoints, early stopping, precision, tracking — is shared.
The session is the classification session with the task-specific parts replaced: examples come from the
task's format, validation scores the loss (generating for every validation example at every evaluation
would cost more than the training on CPU), and the test split is scored by generating with the model
folder just written, through the same ``Generator`` serving uses.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from miniml.data.dataset import Dataset
from miniml.errors import ConfigError
from miniml.evaluate.generative import GenerativeReport, evaluate_generative, write_generative_report
from miniml.generation import Generator, task_module
from miniml.io import atomic_dir
from miniml.modelfolder import write_info
from miniml.tasks.causal_lm import CausalLMSettings
from miniml.tasks.generative import LoadedModel, data_collator, encode_examples, prepare_for_training
from miniml.tasks.generative import write_model_folder as write_generative_folder
from miniml.tasks.seq2seq import Seq2SeqSettings
from miniml.train.callbacks import CheckpointSeal, MetricsForwarder, RichProgress
from miniml.train.config import TrainConfig
from miniml.train.engine import ExampleDataset, build_optimizer, training_arguments
from miniml.train.session import FitOutcome, TrainingSession

log = logging.getLogger(__name__)


class GenerativeTrainConfig(TrainConfig):
    """Keys every generative train config adds to the shared ones."""

    metric_for_best: str = Field("loss", description="validation metric that picks the best checkpoint")
    learning_rate: float = Field(1e-4, gt=0, le=10)
    test_max_examples: int | None = Field(
        None, ge=1, description="generate for only the first N test rows when scoring (CPU time)"
    )
    eval_samples: int = Field(10, ge=0, le=1000, description="sample predictions kept in the report")

    @model_validator(mode="after")
    def _classification_only(self) -> GenerativeTrainConfig:
        for key in ("ordinal_alpha", "short_crops"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key} applies to classification only; remove it for task {self.task}")
        return self


class Seq2SeqTrainConfig(GenerativeTrainConfig):
    """``task: seq2seq``: a seq2seq checkpoint or a warm-started encoder-decoder."""

    task: Literal["seq2seq"] = "seq2seq"  # type: ignore[assignment]
    model: Seq2SeqSettings  # type: ignore[assignment]


class CausalLMTrainConfig(GenerativeTrainConfig):
    """``task: causal_lm``: a decoder trained on prompt → completion, loss on the completion."""

    task: Literal["causal_lm"] = "causal_lm"  # type: ignore[assignment]
    model: CausalLMSettings  # type: ignore[assignment]


GENERATIVE_CONFIGS: dict[str, type[TrainConfig]] = {
    "seq2seq": Seq2SeqTrainConfig,
    "causal_lm": CausalLMTrainConfig,
}


def make_trainer(
    config: GenerativeTrainConfig,
    loaded: LoadedModel,
    train_examples: Sequence[dict[str, Any]],
    eval_examples: Sequence[dict[str, Any]],
    output_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> Trainer:
    """The shared engine's Trainer setup with the task's collator and no logits-based metrics."""
    extra: list[TrainerCallback] = [
        CheckpointSeal(),
        RichProgress(config.batch_size * config.gradient_accumulation_steps),
    ]
    if config.early_stopping_patience:
        extra.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = Trainer(
        model=loaded.model,
        args=training_arguments(config, output_dir),
        data_collator=data_collator(loaded.tokenizer),
        train_dataset=ExampleDataset(train_examples),
        eval_dataset=ExampleDataset(eval_examples),
        optimizers=(build_optimizer(loaded.model, config), None),
        callbacks=[*extra, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


class GenerativeSession(TrainingSession):
    """A training session for ``seq2seq`` / ``causal_lm`` configs (no label set, no featurizer)."""

    config: GenerativeTrainConfig

    def _labels(self) -> list[str]:
        return []  # free-text targets

    def _check_metric(self) -> None:
        """Validation scores the loss only (see the module docstring)."""
        wanted = self.config.metric_for_best
        if wanted.removeprefix("eval_") != "loss":
            raise ConfigError(
                f"metric_for_best: {wanted!r} is not a validation metric of {self.config.task}",
                hint="use loss (generation metrics are computed on the test split after training)",
            )

    def fit(
        self,
        *,
        log_metrics: Callable[..., None] | None = None,
        run_id: str | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> FitOutcome:
        """Train, then write the model folder and score the test split by generating with it."""
        config = self.config
        settings: Any = config.model  # Seq2SeqSettings | CausalLMSettings (the config class says which)
        task: Any = config.task
        if config.threads:
            torch.set_num_threads(config.threads)
        set_seed(config.seed)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.save_state(run_id=run_id or self.state.run_id)
        module = task_module(task)
        loaded = module.load_for_training(settings)
        prepare_for_training(loaded, settings, task)
        fmt = module.make_format(settings, loaded.tokenizer)
        self.save_state(preprocessing=fmt.model_dump(mode="json"))
        examples = {
            name: encode_examples(fmt, loaded.tokenizer, list(frame["input"]), list(frame["target"]))
            for name, frame in (("train", self.train_frame()), ("validation", self.frames["validation"]))
        }
        extra = list(callbacks or []) + ([MetricsForwarder(log_metrics)] if log_metrics else [])
        trainer = make_trainer(
            config, loaded, examples["train"], examples["validation"], self.work_dir, extra
        )
        with warnings.catch_warnings():  # EncoderDecoderModel warns on every step about a v4.12 change
            warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
            result = trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint else None)
        best: Any = trainer.model  # holds the best checkpoint's weights (load_best_model_at_end)
        loaded.model = best.to("cpu").eval()
        history = list(trainer.state.log_history)
        folder, report = self._write_model_folder(loaded, fmt, run_id)
        report_dir = self.work_dir / "report"
        with atomic_dir(report_dir, replace=True) as tmp:
            write_generative_report(tmp, report, self._context(run_id), history)
        return FitOutcome(folder, report.metrics, None, report_dir, history, dict(result.metrics))

    def _context(self, run_id: str | None) -> dict[str, Any]:
        return {
            "model": self.config.model_name,
            "dataset": f"{self.dataset.name}/{self.dataset.fingerprint}",
            "split": "test",
            "run_id": run_id or "",
        }

    def _write_model_folder(  # type: ignore[override]
        self, loaded: LoadedModel, fmt: Any, run_id: str | None
    ) -> tuple[Path, GenerativeReport]:
        """Write the model folder atomically, scoring the test split through a Generator loaded from it."""
        config = self.config
        settings: Any = config.model
        final = self.work_dir / "model"
        with atomic_dir(final, replace=True) as tmp:
            info = write_generative_folder(
                tmp,
                loaded,
                fmt,
                settings,
                name=config.model_name,
                base_model=task_module(config.task).describe_base(settings),
                dataset={"name": self.dataset.name, "fingerprint": self.dataset.fingerprint, "split": "test"},
                lineage={"run_id": run_id, "config_fingerprint": self.state.config_fingerprint},
            )
            report = score_test_split(Generator.load(tmp), self.dataset, config)
            write_info(tmp, info.model_copy(update={"metrics": report.metrics}))
        return final, report


def score_test_split(
    generator: Generator, dataset: Dataset, config: GenerativeTrainConfig
) -> GenerativeReport:
    frame = dataset.split("test")
    if config.test_max_examples:
        frame = frame.head(config.test_max_examples)
    return evaluate_generative(
        generator, frame, batch_size=min(config.eval_batch_size, 64), samples=config.eval_samples
    )

"""One training job from data to model folder: the part of ``train()`` that needs no tracking server.

Reads top to bottom: open the data and check labels → find the run state (and checkpoint when resuming) →
build featurizer and model → train with the shared engine → write the model folder, scoring the test split
through the same predictor serving uses → write the evaluation report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pydantic import BaseModel, Field
from transformers import TrainerCallback, set_seed

from miniml import __version__, paths
from miniml.data.dataset import Dataset, fingerprint_of, open_dataset
from miniml.errors import ConfigError, DataError, ModelError
from miniml.evaluate.calibration import temperature_fit
from miniml.evaluate.evaluate import predict_in_batches, score_split
from miniml.evaluate.metrics import ClassificationMetrics
from miniml.evaluate.report import write_report
from miniml.inference import load_predictor
from miniml.io import atomic_dir, atomic_write_json
from miniml.modelfolder import ModelInfo, write_info
from miniml.models.featurizer import Featurizer, load_featurizer
from miniml.models.folder import architecture_of, save_model_folder
from miniml.models.registry import get_builder
from miniml.tasks.classification import ClassificationTask
from miniml.train.augment import add_short_crops
from miniml.train.callbacks import MetricsForwarder
from miniml.train.checkpoints import latest_checkpoint
from miniml.train.config import TrainConfig
from miniml.train.engine import make_trainer

log = logging.getLogger(__name__)
STATE_FILE = "state.json"
# keys that change how a run executes but not what it learns: a resume may change them
RUNTIME_KEYS = {"threads", "dataloader_workers", "register_model", "tags", "tracking_uri", "experiment"}


class RunState(BaseModel):
    """``MINIML_HOME/runs/<model>/<config fingerprint>/state.json``: what a resume needs to continue."""

    model_name: str
    config_fingerprint: str
    dataset: dict[str, str]
    labels: list[str]
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    status: str = "running"
    started_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass
class FitOutcome:
    """What a finished session produced."""

    model_folder: Path
    metrics: dict[str, float]
    details: ClassificationMetrics | None  # None for generative tasks (their report holds the metrics)
    report_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    train_metrics: dict[str, float] = field(default_factory=dict)


def config_fingerprint(config: TrainConfig) -> str:
    return fingerprint_of(config.model_dump(mode="json", exclude=RUNTIME_KEYS))


class TrainingSession:
    """Prepares one run (data, labels, state, checkpoint) and runs it to a model folder."""

    def __init__(self, config: TrainConfig, *, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.dataset: Dataset = open_dataset(config.dataset)
        self.frames = {s: self.dataset.split(s) for s in ("train", "validation", "test")}
        self.labels = self._labels()
        self._check_metric()
        self.work_dir = paths.runs_dir() / config.model_name / config_fingerprint(config)
        self.checkpoint: Path | None = None
        self.abandoned_run_id: str | None = None
        self.state = self._load_state() if resume else self._new_state()

    # ---------------------------------------------------------------- preparation
    def _labels(self) -> list[str]:
        seen = sorted({str(t) for frame in self.frames.values() for t in frame["target"].tolist()})
        if len(seen) < 2:
            raise DataError(
                f"dataset {self.dataset.name} has {len(seen)} label(s); classification needs 2 or more"
            )
        check = getattr(self.config.model, "check_labels", None)
        return check(seen) if check else seen

    def _check_metric(self) -> None:
        """``metric_for_best`` must be a validation metric this task reports (checked before any training)."""
        known = {"loss", "accuracy"} | {
            f"{a}_{m}" for a in ("macro", "weighted") for m in ("precision", "recall", "f1")
        }
        known |= {f"{m}/{label}" for m in ("precision", "recall", "f1") for label in self.labels}
        wanted = self.config.metric_for_best.removeprefix("eval_")
        if wanted not in known:
            raise ConfigError(
                f"metric_for_best: {wanted!r} is not a validation metric of this task",
                hint=f"use loss, accuracy, macro_f1, weighted_f1 or f1/<label> ({', '.join(self.labels)})",
            )

    def _new_state(self) -> RunState:
        """A fresh run: an interrupted run of the same config is abandoned (its checkpoints removed)."""
        self.abandoned_run_id = self._interrupted_run_id()
        for old in self.work_dir.glob("checkpoint-*"):
            _remove(old)
        return RunState(
            model_name=self.config.model_name,
            config_fingerprint=config_fingerprint(self.config),
            dataset={"name": self.dataset.name, "fingerprint": self.dataset.fingerprint},
            labels=self.labels,
        )

    def _interrupted_run_id(self) -> str | None:
        try:
            old = RunState.model_validate_json((self.work_dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return old.run_id if old.status == "running" else None

    def _load_state(self) -> RunState:
        file = self.work_dir / STATE_FILE
        if not file.is_file():
            raise ModelError(
                f"nothing to resume for model {self.config.model_name}: no interrupted run with this config",
                hint="run without --resume (the config must be the same as the interrupted run's)",
            )
        try:
            state = RunState.model_validate_json(file.read_text(encoding="utf-8"))
        except ValueError:
            raise ModelError(f"run state {file} is corrupted", hint="train again without --resume") from None
        if state.status == "finished":
            raise ModelError(
                f"the run in {self.work_dir} already finished", hint="train again without --resume"
            )
        if state.labels != self.labels:
            raise ModelError(f"dataset labels {self.labels} differ from the interrupted run's {state.labels}")
        if state.dataset.get("fingerprint") != self.dataset.fingerprint:
            raise ModelError(
                f"dataset {self.dataset.name} changed since the interrupted run "
                f"({state.dataset.get('fingerprint')} → {self.dataset.fingerprint})",
                hint=f"pin it with dataset: {self.dataset.name}/{state.dataset.get('fingerprint')}",
            )
        self.checkpoint = latest_checkpoint(self.work_dir)
        return state

    def save_state(self, **changes: Any) -> None:
        self.state = self.state.model_copy(update=changes)
        atomic_write_json(self.work_dir / STATE_FILE, self.state.model_dump(mode="json"))

    # ---------------------------------------------------------------- training
    def featurizer(self) -> Featurizer:
        """Fit (or, when resuming, reload) the featurizer; it is kept in the run folder for resumes."""
        folder = self.work_dir / "featurizer"
        if self.resume and folder.is_dir():
            return load_featurizer(folder, self.state.preprocessing)
        featurizer = self.config.model.make_featurizer(self.train_frame()["input"].astype(str).tolist())
        with atomic_dir(folder, replace=True) as tmp:
            featurizer.save(tmp)
        self.save_state(preprocessing=featurizer.preprocessing())
        return featurizer

    def train_frame(self) -> pd.DataFrame:
        frame = self.frames["train"]
        limit = self.config.max_train_examples
        if limit and limit < len(frame):
            frame = frame.sample(n=limit, random_state=self.config.seed)
        return frame

    def augmented_train_frame(self) -> pd.DataFrame:
        """The rows training sees: ``train_frame`` plus ``short_crops`` when configured."""
        frame = self.train_frame()
        crops = self.config.short_crops
        return frame if crops is None else add_short_crops(frame, crops, self.config.seed)

    def fit(
        self,
        *,
        log_metrics: Callable[..., None] | None = None,
        run_id: str | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> FitOutcome:
        """Train, then write and score the model folder; checkpoints go to the run folder."""
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        set_seed(config.seed)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.save_state(run_id=run_id or self.state.run_id)
        featurizer = self.featurizer()
        task = ClassificationTask(self.labels)
        module = get_builder(config.model.kind)(config.model, self.labels, featurizer)
        extra = list(callbacks or []) + ([MetricsForwarder(log_metrics)] if log_metrics else [])
        trainer = make_trainer(
            config,
            task,
            featurizer,
            module,
            task.examples(self.augmented_train_frame(), featurizer),
            task.examples(self.frames["validation"], featurizer),
            self.work_dir,
            extra,
        )
        result = trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint else None)
        best = module.to("cpu").eval()  # holds the best checkpoint's weights (load_best_model_at_end)
        history = list(trainer.state.log_history)
        folder, details = self._write_model_folder(best, featurizer, run_id)
        report_dir = self.work_dir / "report"
        context = {
            "model": config.model_name,
            "dataset": f"{self.dataset.name}/{self.dataset.fingerprint}",
            "split": "test",
            "run_id": run_id or "",
        }
        with atomic_dir(report_dir, replace=True) as tmp:
            write_report(tmp, details, context, history)
        return FitOutcome(folder, details.summary(), details, report_dir, history, dict(result.metrics))

    def _write_model_folder(
        self, module: torch.nn.Module, featurizer: Featurizer, run_id: str | None
    ) -> tuple[Path, ClassificationMetrics]:
        """Write the model folder atomically, scoring the test split through ``load_predictor`` on it."""
        spec = self.config.model
        info = ModelInfo(
            name=self.config.model_name,
            task="classification",
            architecture=architecture_of(spec),
            labels=self.labels,
            preprocessing=featurizer.preprocessing(),
            base_model=getattr(spec, "name_or_path", None),
            dataset={"name": self.dataset.name, "fingerprint": self.dataset.fingerprint, "split": "test"},
            lineage={"run_id": run_id, "config_fingerprint": self.state.config_fingerprint},
            miniml_version=__version__,
        )
        final = self.work_dir / "model"
        with atomic_dir(final, replace=True) as tmp:
            save_model_folder(tmp, module, featurizer, spec, info)
            info = self._fit_temperature(tmp, info)
            details = score_split(load_predictor(tmp), self.dataset, "test")
            write_info(tmp, info.model_copy(update={"metrics": details.summary()}))
        return final, details

    def _fit_temperature(self, folder: Path, info: ModelInfo) -> ModelInfo:
        """Temperature scaling on the validation split: recorded in lineage, applied if it lowers the ECE."""
        frame = self.frames["validation"]
        if not self.config.temperature_scaling or frame.empty:
            return info
        probs = predict_in_batches(load_predictor(folder), frame["input"].astype(str).tolist())
        fit = temperature_fit(probs, ClassificationTask(self.labels).label_ids(frame["target"].tolist()))
        log.info("temperature scaling on validation: %s", fit)
        update: dict[str, Any] = {"lineage": {**info.lineage, "temperature_scaling": fit}}
        if fit["kept"]:
            update["logit_temperature"] = fit["temperature"]
        info = info.model_copy(update=update)
        write_info(folder, info)
        return info

    def finish(self) -> None:
        """Mark the run finished and drop its checkpoints (the model folder is what remains)."""
        self.save_state(status="finished")
        for old in self.work_dir.glob("checkpoint-*"):
            _remove(old)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

"""One training job from data to model folder, for every task: the part of ``train()`` without tracking.

Reads top to bottom: open the data and ask the task for its labels → find the run state (and checkpoint when
resuming) → the task's recipe (model, examples, collator) → train with the shared engine → write the model
folder, scoring the test split through the runtime serving uses → write the evaluation report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field
from transformers import Trainer, TrainerCallback, set_seed

import miniml.paths as paths
from miniml.data.dataset import Dataset, fingerprint_of, open_dataset
from miniml.data.facts import dataset_facts
from miniml.errors import ModelError
from miniml.io import atomic_dir, atomic_write_json
from miniml.modelfolder import write_info
from miniml.runtime.device import set_threads
from miniml.tasks.base import Evaluation, TrainConfig, TrainingContext, TrainingRecipe
from miniml.tasks.registry import get_task, load_model
from miniml.train.callbacks import MetricsForwarder
from miniml.train.checkpoints import latest_checkpoint
from miniml.train.engine import make_trainer
from miniml.version import __version__

log = logging.getLogger(__name__)
STATE_FILE = "state.json"
# keys that change how a run executes but not what it learns: a resume may change them
RUNTIME_KEYS = {
    "threads",
    "dataloader_workers",
    "register_model",
    "tags",
    "tracking_uri",
    "experiment",
    "backend",
}


class RunState(BaseModel):
    """``MINIML_HOME/runs/<model>/<config fingerprint>/state.json``: what a resume needs to continue."""

    model_name: str
    config_fingerprint: str
    dataset: dict[str, str]
    labels: list[str]
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    status: str = "running"
    backend: str = "local"  # where the run's checkpoints are: a resume must use the same backend
    started_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass
class FitOutcome:
    """What a finished session produced."""

    model_folder: Path
    metrics: dict[str, float]
    evaluation: Evaluation  # the test split's scores (classifiers: ``.details`` has every figure)
    report_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    train_metrics: dict[str, float] = field(default_factory=dict)


def config_fingerprint(config: TrainConfig) -> str:
    return fingerprint_of(config.model_dump(mode="json", exclude=RUNTIME_KEYS))


def run_folder(config: TrainConfig) -> Path:
    """``MINIML_HOME/runs/<model>/<config fingerprint>``: checkpoints, run state, the model folder."""
    return paths.runs_dir() / config.model_name / config_fingerprint(config)


class TrainingSession:
    """Prepares one run (data, labels, state, checkpoint) and runs it to a model folder, for any task."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, work_dir: Path | None = None) -> None:
        self.config = config
        self.resume = resume
        self.task = get_task(config.task)
        self.dataset: Dataset = open_dataset(config.dataset)
        self.frames = {s: self.dataset.split(s) for s in ("train", "validation", "test")}
        self.labels = self.task.labels(config, self.frames)
        self.task.check_config(config, self.labels)
        self.work_dir = work_dir or run_folder(config)
        self.checkpoint: Path | None = None
        self.abandoned_run_id: str | None = None
        self.state = self._load_state() if resume else self._new_state()
        self.run_metrics: dict[str, float] = {}  # logged with the test metrics (e.g. per-worker throughput)
        self.run_tags: dict[str, str] = {"miniml.backend": config.backend.type}

    # ---------------------------------------------------------------- preparation
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
            backend=self.config.backend.type,
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
        if state.backend != self.config.backend.type:
            raise ModelError(
                f"the interrupted run trained on backend {state.backend}; its checkpoints are kept there",
                hint=f"resume with --backend {state.backend}",
            )
        if state.labels != self.labels:
            raise ModelError(f"dataset labels {self.labels} differ from the interrupted run's {state.labels}")
        if state.dataset.get("fingerprint") != self.dataset.fingerprint:
            raise ModelError(
                f"dataset {self.dataset.name} changed since the interrupted run "
                f"({state.dataset.get('fingerprint')} → {self.dataset.fingerprint})",
                hint=f"pin it with dataset: {self.dataset.name}/{state.dataset.get('fingerprint')}",
            )
        self.checkpoint = self.find_checkpoint()
        return state

    def find_checkpoint(self) -> Path | None:
        """The checkpoint a resume continues from (the local backend: the newest sealed one)."""
        return latest_checkpoint(self.work_dir)

    def save_state(self, **changes: Any) -> None:
        self.state = self.state.model_copy(update=changes)
        atomic_write_json(self.work_dir / STATE_FILE, self.state.model_dump(mode="json"))

    # ---------------------------------------------------------------- training
    def train_frame(self) -> pd.DataFrame:
        frame = self.frames["train"]
        limit = self.config.max_train_examples
        if limit and limit < len(frame):
            frame = frame.sample(n=limit, random_state=self.config.seed)
        return frame

    def context(self) -> TrainingContext:
        """What the task's recipe is built from."""
        return TrainingContext(
            config=self.config,
            dataset=self.dataset,
            frames=self.frames,
            labels=self.labels,
            work_dir=self.work_dir,
            resume=self.resume,
            preprocessing=dict(self.state.preprocessing),
            remember=lambda preprocessing: self.save_state(preprocessing=preprocessing),
            train_frame=self.train_frame(),
        )

    def fit(
        self,
        *,
        log_metrics: Callable[..., None] | None = None,
        run_id: str | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> FitOutcome:
        """Train, then write and score the model folder; checkpoints go to the run folder."""
        trainer, recipe, result = self.run_trainer(
            log_metrics=log_metrics, run_id=run_id, callbacks=callbacks
        )
        return self.finish_model(trainer, recipe, dict(result.metrics), run_id)

    def run_trainer(
        self,
        *,
        log_metrics: Callable[..., None] | None = None,
        run_id: str | None = None,
        callbacks: list[TrainerCallback] | None = None,
    ) -> tuple[Trainer, TrainingRecipe, Any]:
        """Build the task's recipe and train it (from the checkpoint when resuming)."""
        config = self.config
        set_threads(config.threads)
        set_seed(config.seed)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.save_state(run_id=run_id or self.state.run_id)
        recipe = self.task.recipe(self.context())
        extra = list(callbacks or []) + ([MetricsForwarder(log_metrics)] if log_metrics else [])
        trainer = self.make_trainer(recipe, extra)
        with recipe.train_context():
            result = trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint else None)
        return trainer, recipe, result

    def make_trainer(self, recipe: TrainingRecipe, callbacks: list[TrainerCallback]) -> Trainer:
        """The Trainer for this run (a cluster backend feeds it its data shard instead)."""
        return make_trainer(self.config, recipe, self.work_dir, callbacks)

    def finish_model(
        self, trainer: Trainer, recipe: TrainingRecipe, train_metrics: dict[str, Any], run_id: str | None
    ) -> FitOutcome:
        """Write the model folder from the best weights, score the test split, write the report."""
        best: Any = trainer.model  # holds the best checkpoint's weights (load_best_model_at_end)
        recipe.model = best.to("cpu").eval()
        history = list(trainer.state.log_history)
        folder, evaluation = self._write_model_folder(recipe, run_id)
        report_dir = self.work_dir / "report"
        context = {
            "model": self.config.model_name,
            "dataset": f"{self.dataset.name}/{self.dataset.fingerprint}",
            "split": "test",
            "run_id": run_id or "",
        }
        with atomic_dir(report_dir, replace=True) as tmp:
            evaluation.write(tmp, context, history)
        return FitOutcome(folder, evaluation.metrics, evaluation, report_dir, history, train_metrics)

    def _write_model_folder(self, recipe: TrainingRecipe, run_id: str | None) -> tuple[Path, Evaluation]:
        """Write the model folder atomically, scoring the test split through the runtime serving uses."""
        common = {
            "name": self.config.model_name,
            "dataset": dataset_facts(self.dataset),  # what the model card says about the data
            "lineage": {"run_id": run_id, "config_fingerprint": self.state.config_fingerprint},
            "miniml_version": __version__,
        }
        final = self.work_dir / "model"
        with atomic_dir(final, replace=True) as tmp:
            info = recipe.save(tmp, common)
            loaded = load_model(tmp)
            options = self.task.test_options(self.config)
            options = replace(options, source=f"test split of {self.dataset.name}")
            evaluation = self.task.evaluate(loaded, self.frames["test"], options)
            write_info(tmp, info.model_copy(update={"metrics": evaluation.metrics}))
        return final, evaluation

    def finish(self) -> None:
        """Mark the run finished and drop its checkpoints (the model folder is what remains)."""
        self.save_state(status="finished")
        for old in self.work_dir.glob("checkpoint-*"):
            _remove(old)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

"""Small Trainer callbacks: a rich progress bar, per-step metrics to MLflow, and checkpoint sealing."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from miniml.train.checkpoints import seal_checkpoint

log = logging.getLogger("miniml.train")
_DETAIL = re.compile(r"/|precision|recall|weighted|_per_second|flos")


class RichProgress(TrainerCallback):
    """Steps done / total, loss and examples per second on a terminal.

    Off a terminal the bar is silent; the same figures go to the ``miniml.train`` logger (INFO) at each
    logging step, for whoever configured logging (CI logs, background jobs).
    """

    def __init__(self, examples_per_step: int) -> None:
        self.examples_per_step = examples_per_step
        self.console = Console(file=sys.stderr)
        self.progress: Progress | None = None
        self.task: Any = None
        self.start = (0.0, 0)
        self.loss = float("nan")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, stats=""
        )
        self.start = (time.perf_counter(), state.global_step)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.progress is None:
            return
        seconds = max(time.perf_counter() - self.start[0], 1e-9)
        rate = (state.global_step - self.start[1]) * self.examples_per_step / seconds
        self.progress.update(
            self.task, completed=state.global_step, stats=f"loss {self.loss:.4f} · {rate:,.0f} ex/s"
        )

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        logs = kw.get("logs") or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        seconds = max(time.perf_counter() - self.start[0], 1e-9)
        rate = (state.global_step - self.start[1]) * self.examples_per_step / seconds
        shown = " ".join(  # one readable line: per-class and precision/recall figures go to MLflow only
            f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, int | float) and not _DETAIL.search(k)
        )
        log.info("step %d/%d · %.1f ex/s · %s", state.global_step, state.max_steps, rate, shown)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class MetricsForwarder(TrainerCallback):
    """Forward every numeric log entry (loss, learning rate, eval metrics) to a ``log_metrics`` function."""

    def __init__(self, log_metrics: Callable[..., None]) -> None:
        self.log_metrics = log_metrics

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        logs = kw.get("logs") or {}
        numeric = {
            k: float(v) for k, v in logs.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if numeric:
            self.log_metrics(numeric, step=state.global_step)


class CheckpointSeal(TrainerCallback):
    """Seal each checkpoint after the Trainer finished writing it (see ``train/checkpoints.py``)."""

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        folder = Path(args.output_dir or ".") / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        # on a cluster only rank 0 holds the weights; the other ranks' folders hold their RNG state only
        if state.is_world_process_zero and folder.is_dir():
            seal_checkpoint(folder, state.global_step)

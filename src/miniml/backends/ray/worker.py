"""What each Ray Train worker runs: the task's own training recipe, under DDP, on its Ray Data shard.

Every rank builds the same recipe (same featurizer, model and validation examples) and trains it with the
shared engine; the transformers Trainer is prepared for Ray (``prepare_trainer``) and fed batches the worker
encodes from its shard of the training rows (``recipe.encode`` + ``recipe.collate``). Ray set up the process
group (gloo on CPU, NCCL on GPU), so the Trainer wraps the model in DDP and averages gradients.
``RayTrainReportCallback`` hands every sealed checkpoint to Ray Train, which keeps it in the run's storage.

Rank 0 is the only one that tracks: it runs :func:`miniml.train.run.train` with this session, so the MLflow
run, the model folder, the test evaluation and the registered version are those of a local run; the other
ranks train in a scratch folder and write nothing that lasts. Resuming (``--resume``, or Ray restarting the
workers after a failure) starts every rank from Ray's latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import PreTrainedModel, Trainer, TrainerCallback

from miniml.backends.ray.cluster import apply_env
from miniml.tasks.base import TrainConfig, TrainingRecipe
from miniml.train.checkpoints import verify_checkpoint
from miniml.train.config import train_config
from miniml.train.engine import make_trainer
from miniml.train.session import TrainingSession

log = logging.getLogger("miniml.train")
HF_CHECKPOINT = "checkpoint"  # RayTrainReportCallback's folder inside a Ray checkpoint


class RayWorkerSession(TrainingSession):
    """A training session inside a Ray Train worker (see the module docstring)."""

    def __init__(self, config: TrainConfig, payload: dict[str, Any], scratch: Path) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.payload, self.scratch = payload, scratch
        self.ray_checkpoint = ray.train.get_checkpoint()
        resume = self.ray_checkpoint is not None
        own = None if self.rank == 0 else scratch  # only rank 0 writes to the run folder
        super().__init__(config, resume=resume and self.rank == 0, work_dir=own)
        if resume and self.checkpoint is None:
            self.checkpoint = self.find_checkpoint()
        self.run_tags |= {
            "miniml.ray.workers": str(self.world),
            "miniml.ray.placement": config.backend.placement,
        }

    def find_checkpoint(self) -> Path | None:
        """Ray's latest checkpoint, copied here and verified against its seal."""
        if self.ray_checkpoint is None:
            return None
        target = self.scratch / "resume"
        shutil.rmtree(target, ignore_errors=True)
        self.ray_checkpoint.to_directory(str(target))
        folder = target / HF_CHECKPOINT
        verify_checkpoint(folder)
        repoint_best(folder, self.payload["experiment_dir"])
        return folder

    def make_trainer(self, recipe: TrainingRecipe, callbacks: list[TrainerCallback]) -> Trainer:
        """The shared Trainer, fed this worker's shard in batches of ``batch_size / workers``."""
        import ray.train
        from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

        config = self.config
        per_worker = max(1, config.batch_size // self.world)
        batches = math.ceil(self.payload["rows_per_worker"] / per_worker)
        steps = config.max_steps or math.ceil(config.epochs * batches / config.gradient_accumulation_steps)
        shard = ray.train.get_dataset_shard("train")
        encode = recipe.encode

        def collate(batch: dict[str, Any]) -> dict[str, Any]:
            frame = pd.DataFrame({"input": batch["input"], "target": batch["target"]})
            return recipe.collate(encode(frame))

        feed = shard.iter_torch_batches(
            batch_size=per_worker,
            collate_fn=collate,
            local_shuffle_buffer_size=min(max(per_worker * 64, 1024), 20000),
        )
        self.examples_per_step = per_worker * config.gradient_accumulation_steps
        trainer = make_trainer(
            config,
            recipe,
            self.scratch / "hf",
            [*callbacks, RayTrainReportCallback()],
            train_dataset=feed,
            max_steps=steps,
            per_device_train_batch_size=per_worker,
            ignore_data_skip=True,  # a resumed run goes on with fresh batches instead of replaying old ones
            log_level_replica="error",
            ddp_find_unused_parameters=None if isinstance(recipe.model, PreTrainedModel) else False,
        )
        return prepare_trainer(trainer)

    def run_trainer(self, **kwargs: Any) -> tuple[Trainer, TrainingRecipe, Any]:
        """Train, then gather every worker's examples per second (rank 0 logs them with the run)."""
        import torch.distributed as dist

        start = time.perf_counter()
        trainer, recipe, result = super().run_trainer(**kwargs)
        steps = trainer.state.global_step - (self.resumed_step(trainer))
        rate = steps * self.examples_per_step / max(time.perf_counter() - start, 1e-9)
        rates: list[Any] = [None] * self.world
        dist.all_gather_object(rates, rate)
        self.run_metrics = {f"ray/worker_{r}/examples_per_s": float(v) for r, v in enumerate(rates)}
        self.run_metrics |= {"ray/examples_per_s": float(sum(rates)), "ray/workers": float(self.world)}
        return trainer, recipe, result

    def resumed_step(self, trainer: Trainer) -> int:
        if self.checkpoint is None:
            return 0
        state = json.loads((self.checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state.get("global_step", 0))


def repoint_best(folder: Path, experiment_dir: str) -> None:
    """After a restart the best checkpoint's folder (in a dead worker's scratch) is gone; point the Trainer
    at Ray's copy of it, found in the run's storage by its step (local storage only)."""
    state_file = folder / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    best = state.get("best_model_checkpoint")
    if not best or Path(best).is_dir():
        return
    step = Path(best).name.rpartition("-")[2]
    for candidate in sorted(Path(experiment_dir).glob(f"checkpoint_*/{HF_CHECKPOINT}")):
        try:
            found = json.loads((candidate / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if str(found.get("global_step")) == step:
            state["best_model_checkpoint"] = str(candidate)
            state_file.write_text(json.dumps(state), encoding="utf-8")
            return


def train_loop(payload: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: one rank of the run (see the module docstring)."""
    import ray.train

    from miniml.train.run import train

    apply_env(payload["env"])
    _quiet_worker()
    config = train_config(payload["config"])
    config = config.model_copy(update={"threads": max(1, int(config.backend.cpus_per_worker))})
    scratch = Path(tempfile.mkdtemp(prefix="miniml-ray-worker-"))
    try:
        session = RayWorkerSession(config, payload, scratch)
        if session.rank == 0:
            _log_progress()
            result = train(config, resume=session.resume, session=session)
            summary = {
                "run_id": result.run_id,
                "model_folder": str(result.model_folder),
                "model_version": result.model_version,
                "metrics": result.metrics,
                "report_dir": str(result.report_dir) if result.report_dir else None,
                "run_metrics": session.run_metrics,
            }
            report_result(config, summary, scratch)
        else:
            session.run_trainer()
            ray.train.report({})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report_result(config: TrainConfig, summary: dict[str, Any], scratch: Path) -> None:
    """Rank 0's last report: the run's outcome, in a checkpoint of its own (the driver's result is the
    latest checkpoint's metrics). Its score is NaN, the lowest, so it never passes for the best weights."""
    import ray.train

    folder = scratch / "result"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps(summary), encoding="utf-8")
    metric = config.metric_for_best.removeprefix("eval_")
    metrics = {"miniml_result": json.dumps(summary), f"eval_{metric}": float("nan")}
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)))


def _quiet_worker() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _log_progress() -> None:
    """Rank 0's progress lines (step, loss, examples/s) reach the driver's terminal through Ray's logs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # Ray's worker logging would print every line twice

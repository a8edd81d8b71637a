"""``miniml train --backend ray``: a Ray Train ``TorchTrainer`` running the task's own recipe on N workers.

Reads top to bottom: check what a resume needs → connect to (or start) the cluster → the training rows as
a Ray Data dataset (augmented by the task, shuffled, split between the workers by Ray Train) → the
``TorchTrainer`` (one worker per ``backend.workers``, gloo on CPU or NCCL on GPU, checkpoints kept by Ray
Train in the run folder or ``backend.storage_path``) → the result rank 0 reported (:mod:`.worker`).

``backend.workers`` share ``batch_size``: each takes ``batch_size / workers`` rows a step, so a step sees as
many examples as a local one and the schedule (steps, warm-up, evaluations) is the local run's. A fresh run
clears the Ray Train folder of an earlier run of the same config; ``--resume`` continues from its latest
checkpoint (Ray Train finds it there), in the same MLflow run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from miniml.backends.ray.cluster import import_ray, ray_cluster, worker_env
from miniml.backends.ray.failures import explain
from miniml.backends.ray.worker import train_loop
from miniml.compute import BackendConfig
from miniml.data.dataset import Dataset, open_dataset
from miniml.errors import MinimlError, ModelError
from miniml.tasks.base import TrainConfig
from miniml.tasks.registry import get_task
from miniml.train.run import TrainResult
from miniml.train.session import STATE_FILE, RunState, config_fingerprint, run_folder

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it kept


def train_on_ray(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train ``config`` on the Ray cluster its ``backend`` section names (see the module docstring)."""
    section = config.backend
    dataset = open_dataset(config.dataset)  # the manifest only: a missing dataset fails here, in a second
    storage, name = storage_of(config)
    if resume:
        check_resumable(config, storage, name)
    with ray_cluster(section):
        try:
            if not resume:
                clear_storage(storage, name)
            rows, count = training_rows(config, dataset)
            result = _trainer(config, rows, count, storage, name, resume).fit()
        except MinimlError:
            raise
        except Exception as err:
            raise explain(err, f"training {config.model_name} on Ray") from None
    return _result(config, result.metrics)


def storage_of(config: TrainConfig) -> tuple[str, str]:
    """Where Ray Train keeps this run: (storage path, run name)."""
    section = config.backend
    if section.storage_path:
        return section.storage_path.rstrip("/"), f"{config.model_name}-{config_fingerprint(config)}"
    return str(run_folder(config)), "ray"


def _filesystem(storage: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), str(Path(storage).expanduser().resolve())


def check_resumable(config: TrainConfig, storage: str, name: str) -> None:
    """A resume needs an interrupted Ray run of this config with at least one checkpoint kept by Ray."""
    folder = run_folder(config)
    try:
        state = RunState.model_validate_json((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelError(
            f"nothing to resume for model {config.model_name}: no interrupted run with this config",
            hint="run without --resume (the config must be the same as the interrupted run's)",
        ) from None
    if state.status == "finished":
        raise ModelError(f"the run in {folder} already finished", hint="train again without --resume")
    if state.backend != "ray":
        raise ModelError(
            f"the interrupted run trained on backend {state.backend}; its checkpoints are kept there",
            hint=f"resume with --backend {state.backend}",
        )
    fs, root = _filesystem(storage)
    import pyarrow.fs as pafs

    if fs.get_file_info(f"{root}/{name}/{SNAPSHOT}").type == pafs.FileType.NotFound:
        raise ModelError(
            f"no checkpoint to resume from in {storage}/{name}",
            hint="the run died before its first checkpoint; train again without --resume",
        )


def clear_storage(storage: str, name: str) -> None:
    """A fresh run must not continue an earlier run's checkpoints (Ray Train resumes a run by its name)."""
    fs, root = _filesystem(storage)
    import pyarrow.fs as pafs

    if fs.get_file_info(f"{root}/{name}").type != pafs.FileType.NotFound:
        fs.delete_dir(f"{root}/{name}")


def training_rows(config: TrainConfig, dataset: Dataset) -> tuple[Any, int]:
    """The training rows as a materialized Ray Dataset (read by the workers, augmented, shuffled)."""
    ray = import_ray()
    if config.max_train_examples:  # the local path's seeded sample, exactly
        frame = dataset.split("train")
        if config.max_train_examples < len(frame):
            frame = frame.sample(n=config.max_train_examples, random_state=config.seed)
        rows = ray.data.from_pandas(frame[["input", "target"]])
    else:
        rows = ray.data.read_parquet(str(dataset.path / "train.parquet"), columns=["input", "target"])
    payload = {"config": config.model_dump(mode="json")}
    rows = rows.map_batches(augment, fn_kwargs=payload, batch_format="pandas")
    rows = rows.random_shuffle(seed=config.seed).materialize()
    return rows, rows.count()


def augment(batch: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """Ray Data: the task's training augmentation of one block, seeded by the config and the block."""
    import zlib

    from miniml.train.config import train_config

    loaded = train_config(config)
    first = str(batch["input"].iloc[0]) if len(batch) else ""
    seed = (loaded.seed * 1_000_003 + zlib.crc32(first.encode())) % (2**31)
    return get_task(loaded.task).augment(loaded, batch[["input", "target"]], seed=seed)


def _trainer(config: TrainConfig, rows: Any, count: int, storage: str, name: str, resume: bool) -> Any:
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    section: BackendConfig = config.backend
    metric = config.metric_for_best.removeprefix("eval_")
    payload = {
        "config": config.model_dump(mode="json"),
        "env": worker_env(),
        "rows_per_worker": count // section.workers,
        "experiment_dir": f"{_filesystem(storage)[1]}/{name}",
    }
    scaling = ScalingConfig(
        num_workers=section.workers,
        use_gpu=section.gpus_per_worker > 0,
        resources_per_worker={"CPU": section.cpus_per_worker, "GPU": section.gpus_per_worker},
        placement_strategy="SPREAD" if section.placement == "spread" else "PACK",
    )
    run = RunConfig(  # type: ignore[call-arg]  # ray.train's names are Train V2's at run time (mypy sees V1)
        name=name,
        storage_path=storage if "://" in storage else str(Path(storage).expanduser().resolve()),
        failure_config=FailureConfig(max_failures=section.max_failures),
        checkpoint_config=CheckpointConfig(
            num_to_keep=config.keep_checkpoints,
            checkpoint_score_attribute=f"eval_{metric}",
            checkpoint_score_order="min" if "loss" in metric else "max",
        ),
        logging_config=LoggingConfig(log_level="DEBUG" if os.environ.get("MINIML_DEBUG") else "WARNING"),
    )
    return TorchTrainer(
        train_loop,
        train_loop_config=payload,
        scaling_config=scaling,
        run_config=run,
        datasets={"train": rows},
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )


def _result(config: TrainConfig, metrics: dict[str, Any] | None) -> TrainResult:
    """The TrainResult rank 0 reported as its last metrics."""
    summary = json.loads((metrics or {}).get("miniml_result", "null") or "null")
    if not isinstance(summary, dict):
        raise ModelError(f"the Ray run of {config.model_name} ended without a result from its rank 0")
    return TrainResult(
        run_id=summary["run_id"],
        model_folder=Path(summary["model_folder"]),
        model_name=config.model_name,
        model_version=summary["model_version"],
        metrics={k: float(v) for k, v in summary["metrics"].items()},
        report_dir=Path(summary["report_dir"]) if summary["report_dir"] else None,
    )

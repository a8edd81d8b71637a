"""Training examples/s, local vs Ray Train with 1 and 2 workers, and what Ray adds to a short run.

    python bench/ray_train.py                                    # nordic-langid, 300 steps per mode
    python bench/ray_train.py --steps 600 --workers 1 2 4        # a bigger machine

Every mode trains the same config (``examples/nordic-langid/train.yaml`` by default, ``--steps`` optimizer
steps of ``batch_size`` examples, one evaluation at the end) on the same prepared dataset, end to end as
``miniml train`` does (tracked in MLflow, test split scored, version registered) in a scratch MINIML_HOME:

- local with 1 and with 2 torch threads (``threads``);
- Ray with N workers of 1 CPU each (``--backend ray --set backend.workers=N``), on a local cluster the
  script starts once (its start-up is printed apart: a cluster is usually up already).

Per mode it prints the loop's examples/s (``steps × batch_size / train_runtime``, the Trainer's own clock,
rank 0 for Ray) and the command's wall time; overhead = wall − loop. For Ray it also times the data
hand-off alone (read the Parquet split, the task's augmentation, shuffle, materialize in the object store).
Needs the dataset prepared first: ``miniml data prepare examples/nordic-langid/data.yaml``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    import ray
    import torch

    from miniml.registry.environment import cpu_model

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load}, python "
        f"{platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}"
    )


def load(config: Path, dataset: str, steps: int, extra: list[str]) -> Any:
    from miniml.train.config import load_train_config

    schedule = [
        f"max_steps={steps}",
        f"eval_steps={steps}",
        f"checkpoint_steps={steps}",
        f"dataset={dataset}",
    ]
    return load_train_config(config, [*schedule, "early_stopping_patience=null", *extra])


def run(config: Any) -> tuple[float, float]:
    """(loop examples/s, command wall seconds) of one training run."""
    from mlflow.tracking import MlflowClient

    from miniml.backends import get_backend
    from miniml.registry.backend import default_tracking_uri

    start = time.perf_counter()
    result = get_backend(config.backend).train(config)
    wall = time.perf_counter() - start
    metrics = MlflowClient(default_tracking_uri()).get_run(result.run_id).data.metrics
    rate = config.max_steps * config.batch_size / metrics["train_runtime"]
    return rate, wall


def report(name: str, rate: float, wall: float, loop_examples: int) -> None:
    loop = loop_examples / rate
    overhead = wall - loop
    print(
        f"{name:<22} {rate:>9,.0f} ex/s  wall {wall:6.1f} s  loop {loop:6.1f} s  overhead {overhead:6.1f} s"
    )


def data_handoff(config: Any) -> float:
    from miniml.backends.ray.train import training_rows
    from miniml.data.dataset import open_dataset

    start = time.perf_counter()
    rows, count = training_rows(config, open_dataset(config.dataset))
    seconds = time.perf_counter() - start
    print(f"ray data hand-off: {count:,} rows read, augmented, shuffled, materialized in {seconds:.1f} s")
    del rows
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples/nordic-langid/train.yaml")
    parser.add_argument("--dataset", default=None, help="prepared dataset [default: the config's]")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="local torch threads")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    from miniml.data.dataset import open_dataset
    from miniml.train.config import load_train_config

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    name = args.dataset or load_train_config(args.config).dataset
    dataset = str(open_dataset(name).path)  # resolved in this home, before switching to a scratch one
    print(machine())
    with tempfile.TemporaryDirectory(prefix="miniml-bench-ray-train-") as home:
        os.environ["MINIML_HOME"] = home
        os.environ["MLFLOW_TRACKING_URI"] = ""
        from mlflow.tracking import MlflowClient

        from miniml.registry.backend import default_tracking_uri

        MlflowClient(default_tracking_uri()).search_experiments()  # the store's migrations, not timed
        probe = load(args.config, dataset, args.steps, [])
        examples = args.steps * probe.batch_size
        print(
            f"{probe.model_name}: {args.steps} steps × batch {probe.batch_size} = {examples:,} examples/mode"
        )
        for threads in args.threads:
            config = load(args.config, dataset, args.steps, [f"threads={threads}"])
            report(f"local, {threads} thread(s)", *run(config), examples)
        ray_modes(args, dataset, examples)
    print(machine())
    return 0


def ray_modes(args: argparse.Namespace, dataset: str, examples: int) -> None:
    import ray

    from miniml.backends.ray.cluster import quiet_ray

    quiet_ray()
    start = time.perf_counter()
    ray.init(
        num_cpus=max(args.workers) + 1,
        object_store_memory=400 * 1024 * 1024,
        include_dashboard=True,  # Ray Train watches its controller through the state API
        log_to_driver=False,  # the figures only; Ray's own logs stay in its session folder
        logging_level="ERROR",
    )
    print(f"ray cluster start-up: {time.perf_counter() - start:.1f} s (not counted below)")
    try:
        for workers in args.workers:
            config = load(
                args.config, dataset, args.steps, ["backend.type=ray", f"backend.workers={workers}"]
            )
            if workers == args.workers[0]:
                data_handoff(config)
            report(f"ray, {workers} worker(s)", *run(config), examples)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())

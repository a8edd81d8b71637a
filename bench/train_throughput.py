"""Training throughput (examples/s): dynamic padding + length-grouped batches vs padding every batch to max.

    python bench/train_throughput.py                       # MiniLM on sst5, 40 steps per mode
    python bench/train_throughput.py --steps 100 --threads 2

Both modes run the same shared training engine (the transformers Trainer set up by miniml) on the same
examples; only ``group_by_length`` / ``pad_to_max`` differ. The first steps are warm-up and not timed.
Needs the dataset prepared first: ``miniml data prepare examples/reviews/data.yaml``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed
from transformers.utils import logging as hf_logging

from miniml.models.registry import get_builder
from miniml.tasks.classification import ClassificationConfig, ClassificationRecipe, examples
from miniml.train.engine import make_trainer
from miniml.train.session import TrainingSession


class StepTimer(TrainerCallback):
    """Wall time of the optimizer steps after ``warmup``, and padded tokens per batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.seconds = 0.0
        self.steps = 0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step > self.warmup:
            self.seconds = time.perf_counter() - self.start
            self.steps = state.global_step - self.warmup


def measure(base: dict[str, Any], *, grouped: bool, work: Path) -> tuple[float, float]:
    """(examples/s, mean padded sequence length) for one batching mode."""
    config = ClassificationConfig(**base, group_by_length=grouped, pad_to_max=not grouped)
    set_seed(config.seed)
    session = TrainingSession(config)
    featurizer = config.model.make_featurizer([])
    module = get_builder(config.model.kind)(config.model, session.labels, featurizer)
    rows = examples(session.train_frame(), featurizer, session.labels)
    recipe = ClassificationRecipe(module, featurizer, config, session.labels, rows, rows[:8])
    timer = StepTimer(warmup=3)
    trainer = make_trainer(config, recipe, work, [timer])
    trainer.train()
    batches = [trainer.data_collator(b) for b in _batches(trainer, rows)]
    mean_len = sum(b["input_ids"].shape[1] for b in batches) / max(len(batches), 1)
    return timer.steps * config.batch_size / max(timer.seconds, 1e-9), mean_len


def _batches(trainer: Any, examples: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    order = list(trainer._get_train_sampler(trainer.train_dataset))  # the order the Trainer draws
    size = trainer.args.per_device_train_batch_size
    return [[examples[i] for i in order[s : s + size]] for s in range(0, min(len(order), 50 * size), size)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="sst5")
    parser.add_argument("--model", default="minilm", help="pretrained id/folder for the 'pretrained' builder")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    base = {
        "model_name": "throughput-bench",
        "dataset": args.dataset,
        "model": {"kind": "pretrained", "name_or_path": args.model, "max_length": args.max_length},
        "max_steps": args.steps + 3,
        "batch_size": args.batch_size,
        "eval_steps": 10**6,
        "early_stopping_patience": None,
        "learning_rate": 5e-5,
        "threads": args.threads,
    }
    from miniml.registry.environment import cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(
        f"model {args.model}, dataset {args.dataset}, batch {args.batch_size}, max_length {args.max_length}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name, grouped in (
            ("dynamic padding + length grouping", True),
            ("pad every batch to max_length", False),
        ):
            rate, mean_len = measure(base, grouped=grouped, work=Path(work) / name.split()[0])
            results[name] = rate
            print(f"{name:36s} {rate:8.1f} examples/s   (mean padded length {mean_len:.1f} tokens)")
    fast, slow = results.values()
    print(f"speed-up: {fast / slow:.2f}x")


if __name__ == "__main__":
    main()

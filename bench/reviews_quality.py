"""Reviews (SST-5, MiniLM) quality: train the example recipe (or named variants), print accuracy and time.

    python bench/reviews_quality.py                          # examples/reviews/train.yaml as shipped
    python bench/reviews_quality.py --set model.pooling=cls --set label_smoothing=0   # a plain fine-tune
    python bench/reviews_quality.py --recipe all --set precision=fp32   # every variant below, one by one

Runs the same library path as ``miniml train`` minus MLflow and the registry (``miniml.train.fit``).
Prints validation accuracy (what a recipe should be chosen on) next to test accuracy. The README's recipe
sweep (H100, fp32, about 30 s per recipe) came from ``--recipe all``. Needs the dataset prepared first:
``miniml data prepare examples/reviews/data.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from miniml.config import load_config
from miniml.tasks.classification import ClassificationConfig
from miniml.train import fit

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "reviews" / "train.yaml"
RECIPES: dict[str, list[str]] = {  # overrides on top of the shipped config
    "shipped": [],
    "head20_lr8e-5": ["model.head_lr_multiplier=20", "learning_rate=8e-5"],
    "lr5e-5_ep5": ["learning_rate=5e-5", "epochs=5"],
    "llrd0.8_lr1.5e-4": ["model.layerwise_lr_decay=0.8", "learning_rate=1.5e-4"],
    "ls0.2": ["label_smoothing=0.2"],
    "ep4_drop0.2_lr8e-5": ["epochs=4", "model.dropout=0.2", "learning_rate=8e-5", "warmup_ratio=0.06"],
    "sord2": ["ordinal_alpha=2", "label_smoothing=0"],
    "seed1": ["seed=1"],
    "seed2": ["seed=2"],
}


def run(config_path: Path, overrides: list[str]) -> None:
    config = load_config(ClassificationConfig, config_path, overrides)
    start = time.perf_counter()
    outcome = fit(config)
    seconds = time.perf_counter() - start
    print(f"config: {config_path} {' '.join(overrides)}")
    evals = [h for h in outcome.history if "eval_accuracy" in h]
    best = max((h["eval_accuracy"] for h in evals), default=float("nan"))
    print(
        f"validation accuracy {best:.4f}   test accuracy {outcome.metrics['accuracy']:.4f}   "
        f"macro-F1 {outcome.metrics['macro_f1']:.4f}"
    )
    rate = outcome.train_metrics.get("train_samples_per_second", float("nan"))
    print(f"wall time {seconds / 60:.1f} min (training {rate:.1f} examples/s incl. validation)")
    print("validation accuracy per evaluation: " + ", ".join(f"{h['eval_accuracy']:.4f}" for h in evals))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override")
    parser.add_argument(
        "--recipe", action="append", choices=[*RECIPES, "all"], help="named variant(s); 'all' for every one"
    )
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)
    logging.getLogger("miniml.train").setLevel(logging.INFO)  # progress lines on stderr
    from miniml.registry.environment import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, GPU {gpu}"
    )
    names = list(RECIPES) if "all" in (args.recipe or []) else args.recipe or ["shipped"]
    for name in names:
        print(f"== {name}")
        run(args.config, [*args.overrides, *RECIPES[name]])


if __name__ == "__main__":
    main()

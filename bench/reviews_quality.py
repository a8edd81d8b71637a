"""Reviews (SST-5, MiniLM) quality: train the example recipe, print test accuracy, macro-F1 and time.

    python bench/reviews_quality.py                          # examples/reviews/train.yaml as shipped
    python bench/reviews_quality.py --set model.pooling=cls --set label_smoothing=0   # a plain fine-tune

Runs the same library path as ``miniml train`` minus MLflow and the registry (``miniml.train.fit``).
Needs the dataset prepared first: ``miniml data prepare examples/reviews/data.yaml``.
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
from miniml.train import TrainConfig, fit

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "reviews" / "train.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)
    logging.getLogger("miniml.train").setLevel(logging.INFO)  # progress lines on stderr
    config = load_config(TrainConfig, args.config, args.overrides)
    from miniml.registry.environment import cpu_model

    start = time.perf_counter()
    outcome = fit(config)
    seconds = time.perf_counter() - start
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(f"config: {args.config} {' '.join(args.overrides)}")
    print(f"test accuracy {outcome.metrics['accuracy']:.4f}   macro-F1 {outcome.metrics['macro_f1']:.4f}")
    rate = outcome.train_metrics.get("train_samples_per_second", float("nan"))
    print(f"wall time {seconds / 60:.1f} min (training {rate:.1f} examples/s incl. validation)")
    evals = [h for h in outcome.history if "eval_accuracy" in h]
    print("validation accuracy per evaluation: " + ", ".join(f"{h['eval_accuracy']:.4f}" for h in evals))


if __name__ == "__main__":
    main()

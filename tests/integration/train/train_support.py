"""Helpers for the training integration tests: tiny datasets and configs."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from miniml.data.dataset import Dataset, write_dataset

WORDS = {
    "da": "hej med dig hvordan går det godt jeg er glad i dag hvad siger du".split(),  # noqa: SIM905
    "sv": "jag heter anna och bor i stockholm det är bra idag vad säger du".split(),  # noqa: SIM905
    "nn": "eg veit ikkje kva eg skal seie no men det er fint her".split(),  # noqa: SIM905
}


def toy_frame(n: int, seed: int, labels: tuple[str, ...] = ("da", "sv", "nn")) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(labels)
        rows.append({"input": " ".join(rng.choices(WORDS[label], k=rng.randint(3, 9))), "target": label})
    return pd.DataFrame(rows)


def make_toy(name: str = "toy", n_train: int = 300, labels: tuple[str, ...] = ("da", "sv", "nn")) -> Dataset:
    splits = {
        "train": toy_frame(n_train, 1, labels),
        "validation": toy_frame(60, 2, labels),
        "test": toy_frame(60, 3, labels),
    }
    return write_dataset(name, f"fp{n_train}{len(labels)}", splits)


def write_config(path: Path, dataset: Dataset, model: dict, **overrides: object) -> Path:
    """A small train config YAML for the toy data (1 torch thread: the CI machine has 2 shared cores)."""
    import yaml

    data = {
        "model_name": "toy",
        "dataset": str(dataset.path),
        "model": model,
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 0.05,
        "eval_steps": 15,
        "logging_steps": 5,
        "threads": 1,
        **overrides,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path

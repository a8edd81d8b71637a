"""Honest measurements of one predictor: file size, latency percentiles, throughput, quality, parity.

Both models are measured by the same code on the same texts, one after the other, in this process, with the
same thread count; numbers from a shared or busy machine are noisy and the report prints the machine.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miniml.registry.environment import cpu_model
from miniml.runtime.predictor import Predictor, predict_in_batches

WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx.data", ".bin", ".data")


def model_size_bytes(folder: Path) -> int:
    """Bytes of the weight files of a model folder (tokenizer/config files are the same on both sides)."""
    return sum(
        f.stat().st_size for f in Path(folder).rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES)
    )


def batches(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def latency(
    call: Callable[[list[str]], object], texts: Sequence[str], batch_size: int, repeats: int, warmup: int
) -> dict[str, float]:
    """p50/p99/mean milliseconds per ``call(batch)`` and texts/second at ``batch_size``, cycling through
    ``texts`` (``call``: a predictor's ``predict_proba``, or a generator's ``generate``)."""
    pool = batches(texts, batch_size) or [list(texts)]
    pool = [b for b in pool if len(b) == batch_size] or pool
    for i in range(warmup):
        call(pool[i % len(pool)])
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call(pool[i % len(pool)])
        times[i] = time.perf_counter() - start
    ms = times * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        # fewer texts than batch_size: the one short batch is what was timed
        "throughput_per_s": float(sum(len(pool[i % len(pool)]) for i in range(repeats)) / times.sum()),
    }


def predict_all(predictor: Predictor, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(N, C) probabilities for all texts, in order."""
    return predict_in_batches(predictor, texts, batch_size)


def quality(probs: np.ndarray, targets: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-label precision / recall / F1 of argmax predictions against string
    targets (the per-label figures feed the optimized model's card)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    index = {label: i for i, label in enumerate(labels)}
    y_true = np.array([index.get(str(t), -1) for t in targets])
    y_pred = probs.argmax(axis=-1)
    ids = list(range(len(labels)))
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "examples": float(len(y_true)),
    }
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    for i, label in enumerate(labels):
        out.update(
            {f"precision/{label}": float(p[i]), f"recall/{label}": float(r[i]), f"f1/{label}": float(f[i])}
        )
    return out


def outputs_all(predictor: Any, texts: Sequence[str], vectors: bool, batch_size: int = 32) -> np.ndarray:
    """(N, C) probabilities, or with ``vectors`` the raw (N, D) outputs (embeddings), for all texts."""
    if not vectors:
        return predict_all(predictor, texts, batch_size)
    parts = [predictor.outputs(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def max_abs_diff(
    a: Any, b: Any, texts: Sequence[str], batch_size: int = 16, *, vectors: bool = False
) -> float:
    """Largest |p_a - p_b| (or |e_a - e_b| with ``vectors``) over all texts and columns (batched, so padding
    is exercised)."""
    return float(
        np.abs(outputs_all(a, texts, vectors, batch_size) - outputs_all(b, texts, vectors, batch_size)).max(
            initial=0.0
        )
    )


def machine(threads: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    import onnxruntime
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }

"""Load a model folder into a predictor: texts in, class probabilities out.

The predictor applies the folder's own featurizer (the same code training used), runs the module under
``torch.inference_mode``, divides the logits by the folder's ``logit_temperature`` (``miniml.json``; fitted on
validation by training, 1 when scaling did not help) and returns float32 probabilities with columns in
``info.labels`` order. Runtimes
other than torch (ONNX) plug in with ``register_runtime``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo, read_info


@runtime_checkable
class Predictor(Protocol):
    """What serving and batch prediction call."""

    info: ModelInfo
    path: Path

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(B, C) float32 probabilities, columns in ``info.labels`` order."""
        ...


WARM_UP_TEXTS = ("warm up", "Hej, hvordan har du det i dag?", "Ünïcödé 123 !? ÆØÅ", "a " * 200)


def non_finite_rows(probs: np.ndarray) -> np.ndarray:
    """Indices of the rows holding NaN or an infinity (a model with broken weights)."""
    return np.flatnonzero(~np.isfinite(probs).all(axis=-1)) if probs.size else np.zeros(0, dtype=np.int64)


def require_finite(probs: np.ndarray, what: str) -> None:
    """Raise a ModelError naming ``what`` when any probability is NaN or infinite."""
    bad = non_finite_rows(probs)
    if len(bad):
        raise ModelError(
            f"{what}: the model's scores are not finite (NaN or infinity) for {len(bad)} of {len(probs)} "
            f"inputs (first: input {int(bad[0])})",
            hint="its weights are broken (e.g. training diverged): retrain it or restore the folder",
        )


def check_predictor(predictor: Predictor) -> None:
    """Warm-up check of a loaded classifier: right shape and finite scores on a few varied texts."""
    probs = predictor.predict_proba(list(WARM_UP_TEXTS))
    labels = len(predictor.info.labels)
    if probs.shape != (len(WARM_UP_TEXTS), labels):
        raise ModelError(
            f"model {predictor.info.name} returned probabilities of shape {probs.shape} for "
            f"{len(WARM_UP_TEXTS)} texts and {labels} labels; its folder is inconsistent"
        )
    require_finite(probs, f"model {predictor.info.name} ({predictor.path})")


RuntimeLoader = Callable[[Path, ModelInfo, str], Predictor]
_RUNTIMES: dict[str, RuntimeLoader] = {}


def register_runtime(name: str) -> Callable[[RuntimeLoader], RuntimeLoader]:
    """Register how to load model folders whose ``miniml.json`` says ``runtime: name``."""

    def wrap(fn: RuntimeLoader) -> RuntimeLoader:
        _RUNTIMES[name] = fn
        return fn

    return wrap


class TorchPredictor:
    """A torch module + featurizer from a model folder; safe to call from one worker thread at a time."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        from miniml.models.folder import load_model_folder

        loaded = load_model_folder(path)
        self.path = Path(path)
        self.info = loaded.info
        self.featurizer = loaded.featurizer
        module = loaded.module
        if (self.info.model_extra or {}).get("quantization"):  # written by `miniml optimize --int8`
            from miniml.optimize.quantize import apply_saved_quantization

            module, device = apply_saved_quantization(module, self.info), "cpu"  # int8 kernels: CPU only
        elif callable(fold := getattr(module, "for_inference", None)):  # equivalent, faster to predict
            module = fold()
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self._lock = threading.Lock()  # modules and tokenizers are not re-entrant

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        with self._lock, torch.inference_mode():
            batch = {k: v.to(self.device) for k, v in self.featurizer.batch(list(texts)).items()}
            logits = self.module(**batch)["logits"].float()  # (B, C)
            if self.info.logit_temperature != 1.0:
                logits = logits / self.info.logit_temperature
            return torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float32, copy=False)


@register_runtime("torch")
def _load_torch(path: Path, info: ModelInfo, device: str) -> Predictor:
    return TorchPredictor(path, device)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_predictor(path: Path, *, threads: int | None = None, device: str | None = None) -> Predictor:
    """Load a model folder as a predictor; ``threads`` sets torch's intra-op threads for this process."""
    info = read_info(Path(path))
    if info.task != "classification":
        raise ModelError(
            f"model {info.name} is a {info.task} model; load_predictor serves classification models",
        )
    if info.runtime == "onnx":
        import miniml.optimize.onnx_runtime  # noqa: F401  (registers the onnx runtime)
    if info.runtime not in _RUNTIMES:
        raise ModelError(
            f"model {info.name} needs runtime {info.runtime!r}", hint=f"known: {sorted(_RUNTIMES)}"
        )
    if threads is not None:
        if threads < 1:
            raise ModelError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return _RUNTIMES[info.runtime](Path(path), info, device or default_device())

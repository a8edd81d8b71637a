"""The ``torch`` runtime of classifiers: a model folder's module + featurizer, probabilities out.

The predictor applies the folder's own featurizer (the same code training used), runs the module under
``torch.inference_mode``, divides the logits by the folder's ``logit_temperature`` (``miniml.json``; fitted on
validation by training, 1 when scaling did not help), adds ``log(label_weights)`` (a prior shift the
train config asked for) and returns float32 probabilities with columns in
``info.labels`` order. A folder
written by ``miniml optimize --int8`` (PyTorch dynamic int8) is quantized again as it loads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from miniml.modelfolder import logit_offsets
from miniml.models.folder import load_model_folder
from miniml.runtime.quantization import apply_saved_quantization, is_quantized


class TorchPredictor:
    """A torch module + featurizer from a model folder; safe to call from several threads (one at a time)."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        loaded = load_model_folder(path)
        self.path = Path(path)
        self.info = loaded.info
        self.featurizer = loaded.featurizer
        module = loaded.module
        if is_quantized(self.info):
            module, device = apply_saved_quantization(module, self.info), "cpu"  # int8 kernels: CPU only
        elif callable(fold := getattr(module, "for_inference", None)):  # equivalent, faster to predict
            module = fold()
        self.device = torch.device(device)
        self.module = module.to(self.device)
        offsets = logit_offsets(self.info)
        self.offsets = None if offsets is None else torch.from_numpy(offsets)
        self._lock = threading.Lock()  # modules and tokenizers are not re-entrant

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        logits = torch.from_numpy(self.outputs(texts))  # (B, C)
        if self.info.logit_temperature != 1.0:
            logits = logits / self.info.logit_temperature
        if self.offsets is not None:  # the folder's label_weights: a prior shift
            logits = logits + self.offsets
        return torch.softmax(logits, dim=-1).numpy().astype(np.float32, copy=False)

    def outputs(self, texts: Sequence[str]) -> np.ndarray:
        """The module's raw (B, C) float32 output: a classifier's logits, an encoder's embeddings."""
        with self._lock, torch.inference_mode():
            batch = {k: v.to(self.device) for k, v in self.featurizer.batch(list(texts)).items()}
            return self.module(**batch)["logits"].float().cpu().numpy()

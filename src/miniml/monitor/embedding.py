"""Text embeddings of a transformer classifier, for the embedding drift signal.

The embedding is the attention-masked mean of the encoder's last hidden states, the representation the
classifier head sees for ``pooling: mean`` models (and a standard sentence embedding for ``cls`` heads).
Only torch predictors with a tokenizer have one: an ``encoder`` (miniml's mean-pool head) or a
``base_model`` (a Hugging Face ``...ForSequenceClassification``). Other models (hashing n-grams, ONNX)
return None and are monitored on the other signals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

EmbedFn = Callable[[Sequence[str]], np.ndarray]
BATCH = 32


def embedder_for(predictor: Any) -> EmbedFn | None:
    """texts → (N, H) float32 embeddings for a transformer predictor; None for other models."""
    module = getattr(predictor, "module", None)
    featurizer: Any = getattr(predictor, "featurizer", None)
    if module is None or getattr(featurizer, "kind", None) != "tokenizer":
        return None
    encoder = getattr(module, "encoder", None) or getattr(module, "base_model", None)
    if encoder is None or encoder is module:
        return None
    lock = getattr(predictor, "_lock", None) or contextlib.nullcontext()

    def embed(texts: Sequence[str]) -> np.ndarray:
        import torch

        rows = []
        for start in range(0, len(texts), BATCH):
            chunk = list(texts[start : start + BATCH])
            with lock, torch.inference_mode():
                batch = featurizer.batch(chunk)
                device = next(encoder.parameters()).device
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
                weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, H)
            rows.append(pooled.float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    return embed

"""``Embedder``: what an embedding model's runtime gives — texts in, (B, D) float32 embeddings out.

It runs the model folder on the ``torch`` or ``onnx`` runtime (the same predictors classifiers use, asked for
their raw output instead of probabilities), so ONNX export and int8 apply to embedding models unchanged.
It also counts tokens the way the model reads them (special tokens included): the server refuses inputs
over ``max_tokens`` before any model time is spent, and reports ``usage.prompt_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo
from miniml.models.featurizer import normalize_text


@dataclass(frozen=True)
class EmbeddingSettings:
    """The ``embedding`` section of an embedding model's ``miniml.json``."""

    dimensions: int
    pooling: str
    normalize: bool
    max_tokens: int
    truncation: bool

    @classmethod
    def of(cls, info: ModelInfo) -> EmbeddingSettings:
        raw = getattr(info, "embedding", None)
        if not isinstance(raw, dict):
            raise ModelError(
                f"model {info.name}: miniml.json has no embedding section", hint="retrain or re-import it"
            )
        try:
            return cls(
                dimensions=int(raw["dimensions"]),
                pooling=str(raw["pooling"]),
                normalize=bool(raw["normalize"]),
                max_tokens=int(raw["max_tokens"]),
                truncation=bool(raw.get("truncation", False)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(
                f"model {info.name}: the embedding section of miniml.json is corrupted: {err}"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dimensions": self.dimensions,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_tokens": self.max_tokens,
            "truncation": self.truncation,
        }


class Embedder:
    """A torch or ONNX predictor of an encoder folder, seen as texts → embeddings."""

    def __init__(self, runtime: Any, info: ModelInfo) -> None:
        self.runtime = runtime
        self.info = info
        self.path = runtime.path
        self.settings = EmbeddingSettings.of(info)
        self.tokenizer = runtime.featurizer.tokenizer

    @property
    def dimensions(self) -> int:
        return self.settings.dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(B, D) float32 embeddings, in order (no texts: ``(0, D)``)."""
        if len(texts) == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.asarray(self.runtime.outputs(list(texts)), dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads per text (special tokens included, before any truncation)."""
        ids = self.tokenizer([normalize_text(t) for t in texts], add_special_tokens=True)["input_ids"]
        return [len(x) for x in ids]


def truncate(vectors: np.ndarray, dimensions: int, normalize: bool) -> np.ndarray:
    """The first ``dimensions`` of each row (Matryoshka), re-normalised when the model normalises."""
    out = np.ascontiguousarray(vectors[..., :dimensions], dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        out = out / np.maximum(norms, np.float32(1e-12))
    return out

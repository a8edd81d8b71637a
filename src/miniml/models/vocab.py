"""A learned vocabulary of characters or words → padded id sequences (for ``char_cnn`` and ``bilstm``).

Id 0 is padding, id 1 is unknown. The vocabulary is fitted on the training texts (units seen at least
``min_count`` times, the ``max_size`` most frequent) and saved as ``featurizer.json``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from miniml.io import atomic_write_json
from miniml.models.featurizer import FEATURIZER_FILE, normalize_text

PAD, UNK = 0, 1
_WORD = re.compile(r"\w+|[^\w\s]")
Unit = Literal["char", "word"]


def split_units(text: str, unit: Unit) -> list[str]:
    """Characters, or words and punctuation marks, of an already normalized text."""
    return list(text) if unit == "char" else _WORD.findall(text)


class VocabFeaturizer:
    """Texts → id sequences over a fitted char or word vocabulary, padded per batch."""

    kind = "vocab"

    def __init__(
        self, vocab: Sequence[str], *, unit: Unit, max_length: int, lowercase: bool, min_length: int = 1
    ) -> None:
        self.vocab = list(vocab)
        self.index = {u: i + 2 for i, u in enumerate(self.vocab)}
        self.unit: Unit = unit
        self.max_length = int(max_length)
        self.lowercase = lowercase
        self.min_length = int(min_length)  # e.g. the widest convolution

    @property
    def size(self) -> int:
        return len(self.vocab) + 2

    @classmethod
    def fit(
        cls, texts: Sequence[str], *, unit: Unit, max_size: int, min_count: int, **kwargs: Any
    ) -> VocabFeaturizer:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_units(normalize_text(text, lowercase=kwargs["lowercase"]), unit))
        kept = [u for u, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        return cls(kept[:max_size], unit=unit, **kwargs)

    def encode(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        out = []
        for text in texts:
            units = split_units(normalize_text(text, lowercase=self.lowercase), self.unit)[: self.max_length]
            ids = np.fromiter((self.index.get(u, UNK) for u in units), dtype=np.int64, count=len(units))
            out.append({"input_ids": ids})
        return out

    def collate(self, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False) -> dict[str, Any]:
        lengths = [max(1, len(f["input_ids"])) for f in features]  # an empty text is one padding step
        width = self.max_length if pad_to_max else max(lengths, default=1)
        width = max(width, self.min_length)
        ids = np.full((len(features), width), PAD, dtype=np.int64)  # (B, T)
        for row, f in enumerate(features):
            ids[row, : len(f["input_ids"])] = f["input_ids"]
        return {"input_ids": torch.from_numpy(ids), "lengths": torch.tensor(lengths, dtype=torch.int64)}

    def batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.collate(self.encode(texts))

    def preprocessing(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "unit": self.unit,
            "max_length": self.max_length,
            "min_length": self.min_length,
            "lowercase": self.lowercase,
            "vocab_size": self.size,
            "normalize": "NFC, whitespace collapsed",
        }

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / FEATURIZER_FILE, {**self.preprocessing(), "vocab": self.vocab})


def load_vocab(folder: Path, preprocessing: dict[str, Any]) -> VocabFeaturizer:
    """Rebuild a VocabFeaturizer from ``featurizer.json``."""
    data = json.loads((Path(folder) / FEATURIZER_FILE).read_text(encoding="utf-8"))
    return VocabFeaturizer(
        data["vocab"],
        unit=data["unit"],
        max_length=data["max_length"],
        lowercase=data["lowercase"],
        min_length=data.get("min_length", 1),
    )

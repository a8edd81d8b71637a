"""Featurizers: how raw texts become model inputs; the one preprocessing code path.

A featurizer is saved next to the weights of a model folder (``featurizer.json`` or tokenizer files) and is
what training, evaluation, batch prediction and serving all call. ``encode`` gives one feature dict per text
(used to build training datasets and length-grouped batches), ``collate`` pads/concatenates those into
tensors, and ``batch`` goes straight from texts to tensors (the fast path for inference).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from miniml.errors import ModelError

FEATURIZER_FILE = "featurizer.json"


@runtime_checkable
class Featurizer(Protocol):
    """Turns texts into tensors for one model; saved into and loaded from a model folder."""

    kind: str

    def encode(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One feature dict per text, each with an ``input_ids`` sequence (its length drives grouping)."""
        ...

    def collate(self, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False) -> dict[str, Any]:
        """Stack per-example features into one batch of tensors (dynamic padding unless ``pad_to_max``)."""
        ...

    def batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts straight to a batch of tensors (what inference calls)."""
        ...

    def preprocessing(self) -> dict[str, Any]:
        """The settings recorded as ``preprocessing`` in ``miniml.json``."""
        ...

    def save(self, folder: Path) -> None:
        """Write what ``load_featurizer`` needs into ``folder``."""
        ...


_DESCRIPTIVE = {"normalize", "tokenizer"}  # names and notes, not settings that change the features


def check_agrees(folder: Path, featurizer: Featurizer, preprocessing: dict[str, Any]) -> None:
    """The loaded featurizer's settings must equal what ``miniml.json`` recorded when the folder was saved.

    An edit of ``featurizer.json`` alone (``buckets: 1024`` where the table has 262,144 rows) would
    otherwise change every feature id silently.
    """
    loaded = featurizer.preprocessing()
    differ = sorted(
        k
        for k in loaded.keys() & preprocessing.keys()
        if k not in _DESCRIPTIVE and loaded[k] != preprocessing[k]
    )
    if differ:
        shown = ", ".join(f"{k}: {loaded[k]!r} vs {preprocessing[k]!r}" for k in differ)
        raise ModelError(
            f"model folder {folder}: {FEATURIZER_FILE} disagrees with miniml.json on {shown}",
            hint="one of the two was edited: restore the folder",
        )


def normalize_text(text: str, *, lowercase: bool = False) -> str:
    """Collapse whitespace runs to one space (trimmed), NFC-normalize, optionally lower-case."""
    text = unicodedata.normalize("NFC", " ".join(text.split()))
    return text.lower() if lowercase else text

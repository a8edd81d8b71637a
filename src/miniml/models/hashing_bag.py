"""``hashing_bag``: a fastText-like classifier over hashed char and word n-grams.

Mean of the n-gram embeddings (``nn.EmbeddingBag``) → optional hidden layer → linear. Cheap enough to run
at tens of microseconds per sentence on one core, featurization included (see ``models/hashing.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from miniml.errors import ModelError
from miniml.models.hashing import HashingFeaturizer
from miniml.models.heads import classification_output


class HashingBagSpec(BaseModel):
    """Config of the ``hashing_bag`` builder (the ``model:`` section of a train config)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hashing_bag"] = "hashing_bag"
    buckets: int = Field(262144, ge=1024, le=2**31, description="hash buckets (embedding rows)")
    dim: int = Field(64, ge=2, le=2048, description="embedding size")
    char_ngrams: tuple[int, int] = Field((1, 5), description="smallest and largest char n-gram length")
    word_ngrams: int = Field(2, ge=0, le=4, description="word n-grams up to this order (0: none)")
    hidden: int = Field(0, ge=0, le=8192, description="hidden layer size (0: linear model)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lowercase: bool = True
    max_chars: int = Field(1000, ge=1, description="characters per text kept (longer texts are truncated)")
    sparse: bool = Field(
        False,
        description="sparse embedding gradients: only rows a batch uses are updated (needs sgd or adagrad)",
    )

    @model_validator(mode="after")
    def _check_ngrams(self) -> HashingBagSpec:
        low, high = self.char_ngrams
        if not 1 <= low <= high <= 8:
            raise ValueError("char_ngrams must be [low, high] with 1 <= low <= high <= 8, e.g. [1, 5]")
        return self

    def make_featurizer(self, texts: Sequence[str]) -> HashingFeaturizer:
        """Hashing needs no fitting: the featurizer depends on the spec only."""
        return HashingFeaturizer(
            buckets=self.buckets,
            char_ngrams=self.char_ngrams,
            word_ngrams=self.word_ngrams,
            lowercase=self.lowercase,
            max_chars=self.max_chars,
        )


class HashingBag(nn.Module):
    """EmbeddingBag(mean) over n-gram ids → [hidden] → logits."""

    def __init__(
        self,
        buckets: int,
        dim: int,
        num_labels: int,
        hidden: int = 0,
        dropout: float = 0.0,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=sparse)
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)  # fastText's init
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden or dim, num_labels))
        self.head = nn.Sequential(*layers)

    def forward(
        self, input_ids: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, Any]:
        pooled = self.embedding(input_ids, offsets)  # (B, dim)
        return classification_output(self.head(pooled), labels)  # logits (B, C)

    def for_inference(self) -> nn.Module:
        """An equivalent module for prediction; without a hidden layer, the head folded into the table.

        The mean of the rows then a linear map equals the mean of linearly mapped rows, so a (buckets, C)
        table replaces the (buckets, dim) one: the same logits (to float rounding) from a table ``dim / C``
        times smaller, which is what a memory-bound EmbeddingBag is paying for (fastText's trick for
        linear models). With a hidden layer (a non-linearity after pooling) the module is returned as is.
        """
        linear = self.head[-1]
        if len(self.head) != 2 or not isinstance(linear, nn.Linear):
            return self
        return FoldedHashingBag(self.embedding.weight, linear)


class FoldedHashingBag(nn.Module):
    """Inference-only HashingBag: EmbeddingBag(mean) over a table of per-n-gram logits + the bias."""

    def __init__(self, embedding: torch.Tensor, linear: nn.Linear) -> None:
        super().__init__()
        with torch.no_grad():  # float64 product: the folded table adds no rounding of its own
            table = (embedding.double() @ linear.weight.double().T).to(embedding.dtype)
        self.embedding = nn.EmbeddingBag.from_pretrained(table, freeze=True, mode="mean")
        self.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(
        self, input_ids: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, Any]:
        return classification_output(self.embedding(input_ids, offsets) + self.bias, labels)


def hashing_bag(
    spec: HashingBagSpec, labels: list[str], featurizer: HashingFeaturizer, *, source: Path | None = None
) -> HashingBag:
    """Build an untrained hashing_bag model over ``labels``."""
    if featurizer.buckets != spec.buckets:  # ids past the table would crash, fewer would mis-hash
        raise ModelError(
            f"the featurizer hashes into {featurizer.buckets} buckets but the model's table has "
            f"{spec.buckets} rows",
            hint="featurizer.json and builder.json of the folder disagree: restore the folder",
        )
    return HashingBag(spec.buckets, spec.dim, len(labels), spec.hidden, spec.dropout, spec.sparse)

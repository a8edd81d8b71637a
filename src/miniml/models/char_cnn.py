"""``char_cnn``: character embeddings → parallel 1-D convolutions of several widths → max-pool → linear."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from miniml.models.heads import classification_output
from miniml.models.vocab import PAD, VocabFeaturizer


class CharCNNSpec(BaseModel):
    """Config of the ``char_cnn`` builder."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["char_cnn"] = "char_cnn"
    embedding_dim: int = Field(64, ge=2, le=1024)
    widths: list[int] = Field(default_factory=lambda: [2, 3, 4, 5], min_length=1)
    filters: int = Field(128, ge=1, le=4096, description="output channels per width")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_length: int = Field(256, ge=8, description="characters per text kept")
    max_vocab: int = Field(2000, ge=10)
    min_count: int = Field(2, ge=1)
    lowercase: bool = False

    def make_featurizer(self, texts: Sequence[str]) -> VocabFeaturizer:
        return VocabFeaturizer.fit(
            texts,
            unit="char",
            max_size=self.max_vocab,
            min_count=self.min_count,
            max_length=self.max_length,
            lowercase=self.lowercase,
            min_length=max(self.widths),
        )


class CharCNN(nn.Module):
    """(B, T) char ids → (B, C) logits."""

    def __init__(self, vocab_size: int, spec: CharCNNSpec, num_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, spec.embedding_dim, padding_idx=PAD)
        self.convs = nn.ModuleList(nn.Conv1d(spec.embedding_dim, spec.filters, w) for w in spec.widths)
        self.dropout = nn.Dropout(spec.dropout)
        self.out = nn.Linear(spec.filters * len(spec.widths), num_labels)

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, Any]:
        x = self.embedding(input_ids).transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))  # (B, F, T - w + 1)
            # windows that start past the text's end see only padding: keep them out of the max
            starts = torch.arange(h.shape[-1], device=h.device)[None, :]
            h = h.masked_fill((starts >= lengths[:, None]).unsqueeze(1), float("-inf"))
            pooled.append(h.max(dim=-1).values)  # (B, F)
        return classification_output(self.out(self.dropout(torch.cat(pooled, dim=-1))), labels)


def char_cnn(
    spec: CharCNNSpec, labels: list[str], featurizer: VocabFeaturizer, *, source: Path | None = None
) -> CharCNN:
    """Build an untrained char-CNN over ``featurizer``'s character vocabulary."""
    return CharCNN(featurizer.size, spec, len(labels))

"""``bilstm``: char or word embeddings → BiLSTM → mean+max pooling → linear (like the original service)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from miniml.models.heads import classification_output
from miniml.models.vocab import PAD, VocabFeaturizer


class BiLSTMSpec(BaseModel):
    """Config of the ``bilstm`` builder."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bilstm"] = "bilstm"
    unit: Literal["char", "word"] = "char"
    embedding_dim: int = Field(64, ge=2, le=1024)
    hidden: int = Field(128, ge=2, le=4096, description="LSTM size per direction")
    layers: int = Field(1, ge=1, le=4)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_length: int = Field(256, ge=1, description="units (chars or words) per text kept")
    max_vocab: int = Field(30000, ge=10)
    min_count: int = Field(2, ge=1)
    lowercase: bool = False

    def make_featurizer(self, texts: Sequence[str]) -> VocabFeaturizer:
        return VocabFeaturizer.fit(
            texts,
            unit=self.unit,
            max_size=self.max_vocab,
            min_count=self.min_count,
            max_length=self.max_length,
            lowercase=self.lowercase,
        )


class BiLSTM(nn.Module):
    """(B, T) ids → packed BiLSTM → [mean; max] over valid steps → (B, C) logits."""

    def __init__(self, vocab_size: int, spec: BiLSTMSpec, num_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, spec.embedding_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(
            spec.embedding_dim,
            spec.hidden,
            num_layers=spec.layers,
            batch_first=True,
            bidirectional=True,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(spec.dropout)
        self.out = nn.Linear(4 * spec.hidden, num_labels)

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, Any]:
        packed = pack_padded_sequence(
            self.embedding(input_ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)  # (B, T', 2H)
        mask = (torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        mean = (states * mask).sum(1) / lengths[:, None].clamp(min=1)
        peak = states.masked_fill(~mask, float("-inf")).max(dim=1).values
        return classification_output(self.out(self.dropout(torch.cat([mean, peak], dim=-1))), labels)


def bilstm(
    spec: BiLSTMSpec, labels: list[str], featurizer: VocabFeaturizer, *, source: Path | None = None
) -> BiLSTM:
    """Build an untrained BiLSTM over ``featurizer``'s char or word vocabulary."""
    return BiLSTM(featurizer.size, spec, len(labels))

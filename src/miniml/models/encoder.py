"""``encoder``: a sentence encoder — a Hugging Face encoder, pooled (mean or CLS) and optionally normalised.

The module's one output (``logits``, the output key every miniml module has, so the torch and ONNX runtimes
and the ONNX exporter treat it like any other) is the (B, D) sentence embedding. Mean pooling over the
attention mask is what sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained with; CLS
pooling takes the first token's last hidden state. With ``normalize`` every embedding has unit length, so a
dot product is the cosine similarity.

The encoder comes from a Hugging Face reference (``minilm``, a local folder, a hub id:
:mod:`miniml.models.hf`); the ``embedding`` task also wraps a miniml classifier's encoder in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from miniml.models.hf import from_pretrained, require_model_folder
from miniml.models.pretrained import TokenizerFeaturizer


class EncoderSpec(BaseModel):
    """Config of the ``encoder`` builder (the ``model:`` section of an ``embedding`` train config)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["encoder"] = "encoder"
    name_or_path: str = Field(
        "minilm", min_length=1, description="hub id, local folder, 'minilm', or a classifier's model folder"
    )
    pooling: Literal["mean", "cls"] = Field("mean", description="mean of the token states, or the CLS one")
    normalize: bool = Field(True, description="unit-length embeddings (dot product = cosine similarity)")
    max_tokens: int = Field(
        256, ge=8, le=8192, description="longest input in tokens; longer ones are refused"
    )
    truncation: bool = Field(
        False,
        description="requests may ask for fewer dimensions (the first N, re-normalised): for encoders "
        "trained for it (Matryoshka)",
    )

    def make_featurizer(self, texts: Any = ()) -> TokenizerFeaturizer:
        from transformers import AutoTokenizer

        tokenizer = from_pretrained(AutoTokenizer, require_model_folder(self.name_or_path))
        return TokenizerFeaturizer(tokenizer, max_length=self.max_tokens)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) states, (B, T) mask → (B, H) mean over the real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class SentenceEncoder(nn.Module):
    """Encoder → pooling → (normalisation): ``{"logits": (B, D) embeddings}``."""

    def __init__(self, encoder: nn.Module, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.config: Any = getattr(encoder, "config")  # noqa: B009  (typed as Any on purpose)
        self.pooling = pooling
        self.normalize = normalize

    @property
    def dimensions(self) -> int:
        return int(self.config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, attention_mask)  # (B, H)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return {"logits": pooled}


def encoder(spec: EncoderSpec, labels: Any, featurizer: Any, *, source: Path | None = None) -> nn.Module:
    """The ``encoder`` builder; with ``source`` an untrained skeleton from a model folder's config."""
    from transformers import AutoConfig, AutoModel

    if source is not None:
        config = from_pretrained(AutoConfig, str(source))
        return SentenceEncoder(AutoModel.from_config(config), spec.pooling, spec.normalize)
    module = from_pretrained(AutoModel, require_model_folder(spec.name_or_path))
    return SentenceEncoder(module, spec.pooling, spec.normalize)

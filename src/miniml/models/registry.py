"""The builder and featurizer tables: model architectures are named builder functions, not if/else chains.

A builder takes its validated spec (a pydantic model from the train config's ``model:`` section, chosen by
``kind``), the label names and the featurizer the spec made, and returns an ``nn.Module`` whose
``forward(**batch, labels=None)`` returns ``{"loss", "logits"}`` — the one interface training, evaluation
and inference rely on. A featurizer loader rebuilds the featurizer a model folder was saved with, by the
``kind`` stored in its ``miniml.json`` preprocessing. Both tables are static; an extension adds entries
with :func:`register_builder` / :func:`register_featurizer` (explicit calls, not import side effects).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from torch import nn

from miniml.errors import ModelError
from miniml.models.bilstm import BiLSTMSpec, bilstm
from miniml.models.char_cnn import CharCNNSpec, char_cnn
from miniml.models.encoder import EncoderSpec, encoder
from miniml.models.featurizer import Featurizer, check_agrees
from miniml.models.hashing import load_hashing
from miniml.models.hashing_bag import HashingBagSpec, hashing_bag
from miniml.models.pretrained import PretrainedSpec, load_tokenizer, pretrained
from miniml.models.vocab import load_vocab

Builder = Callable[..., nn.Module]
FeaturizerLoader = Callable[[Path, dict[str, Any]], Featurizer]

# The ``model:`` section of a classification train config, chosen by ``kind``.
ModelSpec = HashingBagSpec | CharCNNSpec | BiLSTMSpec | PretrainedSpec
# Every spec a model folder's ``builder.json`` may hold (the embedding task's ``encoder`` too).
SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(Annotated[ModelSpec | EncoderSpec, Field(discriminator="kind")])

_BUILDERS: dict[str, Builder] = {
    "hashing_bag": hashing_bag,
    "char_cnn": char_cnn,
    "bilstm": bilstm,
    "pretrained": pretrained,
    "encoder": encoder,
}
_FEATURIZERS: dict[str, FeaturizerLoader] = {
    "hashing": load_hashing,
    "vocab": load_vocab,
    "tokenizer": load_tokenizer,
}


def register_builder(name: str, fn: Builder) -> None:
    """Make ``fn`` the builder of architecture ``name`` (an extension's own architecture)."""
    if name in _BUILDERS and _BUILDERS[name] is not fn:
        raise ValueError(f"builder {name!r} registered twice")
    _BUILDERS[name] = fn


def register_featurizer(kind: str, loader: FeaturizerLoader) -> None:
    """Make ``loader`` rebuild featurizers whose saved preprocessing says ``kind``."""
    _FEATURIZERS[kind] = loader


def get_builder(name: str) -> Builder:
    """The builder registered as ``name``; a ModelError listing the known ones otherwise."""
    if name not in _BUILDERS:
        raise ModelError(f"unknown model architecture {name!r}", hint=f"known: {', '.join(builder_names())}")
    return _BUILDERS[name]


def builder_names() -> list[str]:
    return sorted(_BUILDERS)


def load_featurizer(folder: Path, preprocessing: dict[str, Any]) -> Featurizer:
    """Rebuild the featurizer a model folder was trained with."""
    kind = str(preprocessing.get("kind", ""))
    if kind not in _FEATURIZERS:
        raise ModelError(
            f"model folder {folder} uses unknown preprocessing kind {kind!r}",
            hint=f"known kinds: {', '.join(sorted(_FEATURIZERS))}; was it written by a newer miniml?",
        )
    featurizer = _FEATURIZERS[kind](Path(folder), preprocessing)
    check_agrees(folder, featurizer, preprocessing)
    return featurizer

"""Model architectures and the pieces that load them.

- from-scratch builders (``hashing_bag``, ``char_cnn``, ``bilstm``) and pretrained encoders (``pretrained``),
  each a spec + builder function, listed in the static tables of :mod:`miniml.models.registry`;
- featurizers (``hashing``, ``vocab``, ``tokenizer``): the preprocessing saved in a model folder;
- ``folder``: a classifier's weights + featurizer + spec in a model folder;
- ``hf``: the one Hugging Face reference resolver and loader; ``adapters`` (LoRA), ``quantization``.
"""

from miniml.models.bilstm import BiLSTMSpec
from miniml.models.char_cnn import CharCNNSpec
from miniml.models.featurizer import Featurizer
from miniml.models.hashing import HashingFeaturizer
from miniml.models.hashing_bag import HashingBagSpec
from miniml.models.pretrained import PretrainedSpec
from miniml.models.registry import (
    ModelSpec,
    builder_names,
    get_builder,
    load_featurizer,
    register_builder,
    register_featurizer,
)
from miniml.models.vocab import VocabFeaturizer

__all__ = [
    "BiLSTMSpec",
    "CharCNNSpec",
    "Featurizer",
    "HashingBagSpec",
    "HashingFeaturizer",
    "ModelSpec",
    "PretrainedSpec",
    "VocabFeaturizer",
    "builder_names",
    "get_builder",
    "load_featurizer",
    "register_builder",
    "register_featurizer",
]

"""Model architectures: from-scratch builders (hashing_bag, char_cnn, bilstm) and pretrained encoders.

Importing this package registers every built-in builder and featurizer.
"""

from miniml.models.bilstm import BiLSTMSpec
from miniml.models.char_cnn import CharCNNSpec
from miniml.models.featurizer import Featurizer, load_featurizer
from miniml.models.hashing import HashingFeaturizer
from miniml.models.hashing_bag import HashingBagSpec
from miniml.models.pretrained import PretrainedSpec
from miniml.models.registry import builder_names, get_builder, register_builder
from miniml.models.vocab import VocabFeaturizer

ModelSpec = HashingBagSpec | CharCNNSpec | BiLSTMSpec | PretrainedSpec

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
]

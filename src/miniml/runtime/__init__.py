"""The runtime layer: how a model folder runs.

- ``resolve``: the one model URI resolver (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, folders);
- ``loaded``: ``LoadedModel``, the one loaded-model type (source + ``miniml.json`` + runtime object);
- ``table``: the static table of runtimes (``torch``, ``onnx``, ``generation``) and ``open_runtime``;
- ``torch_predictor``, ``onnx_predictor``, ``generation``: the runtimes themselves;
- ``quantization`` (int8 re-applied at load time), ``device``, ``predictor`` (the classifier protocol).

Which runtime loads a folder is the task's answer: ``miniml.tasks.load_model(uri)`` puts the two together.
Only the light modules are imported here; the runtimes import torch.
"""

from miniml.registry.uris import ModelSource
from miniml.runtime.loaded import LoadedModel
from miniml.runtime.resolve import resolve, version_key

__all__ = ["LoadedModel", "ModelSource", "resolve", "version_key"]

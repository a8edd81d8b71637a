"""The runtimes a model folder can run on, in one static table: ``torch``, ``onnx``, ``generation``.

- ``torch``: a classifier's module + featurizer (:class:`~miniml.runtime.torch_predictor.TorchPredictor`);
- ``onnx``: a classifier's ONNX graph + featurizer through onnxruntime
  (:class:`~miniml.runtime.onnx_predictor.OnnxPredictor`);
- ``generation``: a seq2seq / causal-LM model + tokenizer (:class:`~miniml.runtime.generation.Generator`).

A task says which runtime runs its folders (``Task.load``) and, for generation, how the weights and the
prompt format load (:class:`GenerationHooks`); :func:`open_runtime` does the rest. Every runtime checks the
folder's files against its manifest before loading (``verify_folder``) and refuses non-finite weights; int8
folders written by ``miniml optimize`` are quantized again as they load, whatever the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo, verify_folder
from miniml.models.hf import PretrainedModel
from miniml.runtime.device import default_device, set_threads
from miniml.runtime.generation import Generator, PromptFormat
from miniml.runtime.onnx_predictor import OnnxPredictor
from miniml.runtime.quantization import apply_saved_quantization, is_quantized
from miniml.runtime.torch_predictor import TorchPredictor


class GenerationHooks(Protocol):
    """What a generative task tells the generation runtime about its folders."""

    def load_weights(self, folder: Path, info: ModelInfo, device: str) -> PretrainedModel:
        """The model (eval mode, on ``device``) and tokenizer saved in ``folder``."""
        ...

    def prompt_format(self, info: ModelInfo) -> PromptFormat:
        """How prompts become token ids, as saved in ``miniml.json``."""
        ...


Opener = Callable[[Path, ModelInfo, str, Any], Any]


def _torch(folder: Path, info: ModelInfo, device: str, hooks: Any) -> TorchPredictor:
    return TorchPredictor(folder, device)


def _onnx(folder: Path, info: ModelInfo, device: str, hooks: Any) -> OnnxPredictor:
    # open_runtime(threads=N) set torch's thread count; the ONNX session mirrors it. Files checked first.
    return OnnxPredictor(folder, verify_folder(folder), threads=torch.get_num_threads())


def _generation(folder: Path, info: ModelInfo, device: str, hooks: GenerationHooks) -> Generator:
    quantized = is_quantized(info)
    loaded = hooks.load_weights(folder, info, "cpu" if quantized else device)  # int8 kernels: CPU only
    model = apply_saved_quantization(loaded.model, info) if quantized else loaded.model
    return Generator(model, loaded.tokenizer, hooks.prompt_format(info), info)


RUNTIMES: dict[str, Opener] = {"torch": _torch, "onnx": _onnx, "generation": _generation}


def open_runtime(
    name: str,
    folder: Path,
    info: ModelInfo,
    *,
    device: str | None = None,
    threads: int | None = None,
    hooks: Any = None,
) -> Any:
    """Load ``folder`` on runtime ``name``; ``threads`` sets torch's intra-op threads for this process."""
    if name not in RUNTIMES:
        raise ModelError(f"model {info.name} needs runtime {name!r}", hint=f"known: {sorted(RUNTIMES)}")
    set_threads(threads)
    return RUNTIMES[name](Path(folder), info, device or default_device(), hooks)

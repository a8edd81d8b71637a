"""Write and read the weights + featurizer + builder spec of a model folder (see ``miniml.modelfolder``).

Weights are ``model.safetensors`` (``safetensors.torch.save_model``: shared tensors handled, never pickle),
the builder spec is ``builder.json`` (the ``model:`` section the model was trained with), the featurizer
writes its own files, and pretrained encoders also get their ``config.json`` (which plain transformers
either loads exactly or refuses, see ``miniml.models.hf_folder``). Loading rebuilds the module
with the same builder, skeleton only, then loads the weights strictly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from miniml.errors import MinimlError, ModelError
from miniml.io import atomic_write_json
from miniml.modelfolder import ModelInfo, verify_folder, write_info
from miniml.models.featurizer import Featurizer
from miniml.models.hf_folder import refusal_reason, refuse_transformers
from miniml.models.registry import SPEC_ADAPTER, get_builder, load_featurizer

WEIGHTS_FILE = "model.safetensors"
BUILDER_FILE = "builder.json"


@dataclass
class ClassifierFolder:
    """A model folder in memory: module in eval mode, its featurizer, spec and ``miniml.json``."""

    module: nn.Module
    featurizer: Featurizer
    spec: Any
    info: ModelInfo


def architecture_of(spec: Any) -> str:
    """What ``miniml.json`` calls the architecture: ``hf`` for plain transformers heads, else the builder."""
    if spec.kind == "pretrained":
        return "hf" if spec.pooling == "cls" else "hf_mean_pool"
    return str(spec.kind)


def save_model_folder(
    folder: Path, module: nn.Module, featurizer: Featurizer, spec: Any, info: ModelInfo
) -> None:
    """Write a complete model folder into ``folder`` (callers make it atomic with ``atomic_dir``)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(module, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    featurizer.save(folder)
    atomic_write_json(folder / BUILDER_FILE, spec.model_dump(mode="json"))
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "save_pretrained"):
        config.save_pretrained(str(folder))
        reason = refusal_reason(info)
        if reason is not None:  # plain transformers would answer differently: make it refuse, loudly
            refuse_transformers(folder, reason)
    write_info(folder, info)


def read_spec(folder: Path) -> Any:
    """The builder spec stored in ``builder.json``."""
    file = Path(folder) / BUILDER_FILE
    try:
        return SPEC_ADAPTER.validate_python(json.loads(file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(
            f"model folder {folder} has no {BUILDER_FILE}", hint="was it written by miniml train?"
        ) from None
    except (ValueError, ValidationError) as err:
        raise ModelError(f"{file} is corrupted: {str(err).splitlines()[0]}") from None


def load_model_folder(folder: Path) -> ClassifierFolder:
    """Rebuild the module and featurizer of a model folder; any missing/corrupted part is a ModelError."""
    folder = Path(folder)
    info = verify_folder(folder)  # every file as saved (manifest), before anything is parsed
    spec = read_spec(folder)
    try:
        featurizer = load_featurizer(folder, info.preprocessing)
        module = get_builder(spec.kind)(spec, info.labels, featurizer, source=folder)
    except MinimlError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"cannot load model folder {folder}: {type(err).__name__}: {err}") from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"model folder {folder} has no {WEIGHTS_FILE}", hint="copy the whole folder")
    try:
        load_model(module, str(weights), strict=True, device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ModelError(
            f"weights {weights} are corrupted or do not fit the model: {str(err)[:200]}"
        ) from None
    check_finite_parameters(module, weights)
    module.eval()
    return ClassifierFolder(module=module, featurizer=featurizer, spec=spec, info=info)


def check_finite_parameters(module: nn.Module, source: Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged training run), naming the first such tensor."""
    import torch

    for name, param in module.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise ModelError(
                f"weights {source}: tensor {name} holds NaN or infinite values",
                hint="the training run diverged or the file was damaged: retrain or restore the folder",
            )

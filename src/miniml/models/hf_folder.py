"""How a pretrained-encoder model folder looks to plain ``transformers``: it loads exactly, or it refuses.

A folder's ``config.json`` is what ``AutoModelForSequenceClassification.from_pretrained(folder)`` (and every
other Auto class and ``pipeline``) reads first. Two kinds of folders:

- **Loads exactly** (architecture ``hf``, ``pooling: cls``): ``config.json`` is the classification model's
  config and ``model.safetensors`` its state dict, so transformers rebuilds the same module. The one thing
  miniml adds on top, the calibrated logit temperature, is folded into the classification layer when it
  is fitted (``logits / T`` equals ``(W / T) h + b / T``), so transformers' probabilities are miniml's.
- **Refuses** (``hf_mean_pool``; ``hf`` weights that miniml quantizes to int8 when it loads them; a
  temperature that cannot be folded): transformers has no class that computes the same outputs, and
  without this it would *silently* build a freshly initialised head (the mean-pooling head's weights are
  not where transformers looks). So ``config.json`` names a model type transformers does not know, with
  the reason in it, and every Auto loader fails with that text; the real config, which miniml builds the
  module from, is ``hf_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from miniml.io import atomic_write_json
from miniml.modelfolder import ModelInfo

HF_CONFIG = "hf_config.json"  # the real transformers config of a folder that transformers refuses
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
REFUSED_TYPE = "miniml: {reason}; load it with miniml (miniml.tasks.load_predictor), see README.md"
MEAN_POOL_REASON = "encoder + attention-masked mean pooling + linear head: transformers has no class for it"
INT8_REASON = "miniml quantizes these weights to int8 when it loads them"
TEMPERATURE_REASON = "miniml divides the logits by a calibrated temperature that transformers would not apply"
LABEL_WEIGHTS_REASON = "miniml multiplies probabilities by label_weights that transformers would not apply"


def config_source(folder: Path) -> str:
    """Where miniml reads the transformers config of a model folder (``hf_config.json`` when refused)."""
    real = Path(folder) / HF_CONFIG
    return str(real) if real.is_file() else str(folder)


def refusal_reason(info: ModelInfo) -> str | None:
    """Why plain transformers must refuse a pretrained-encoder folder described by ``info`` (None: it
    loads exactly)."""
    if info.architecture == "hf_mean_pool":
        return MEAN_POOL_REASON
    if getattr(info, "quantization", None):
        return INT8_REASON
    if info.logit_temperature != 1.0:  # not folded: e.g. a version trained before folding existed
        return TEMPERATURE_REASON
    if any(w != 1.0 for w in info.label_weights.values()):
        return LABEL_WEIGHTS_REASON
    return None


def refuse_transformers(folder: Path, reason: str) -> None:
    """Make plain transformers refuse ``folder``: its config moves to ``hf_config.json``, and ``config.json``
    names an unknown model type that carries ``reason``."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if config.get("model_type", "").startswith("miniml:"):
        config = json.loads((folder / HF_CONFIG).read_text(encoding="utf-8"))
    atomic_write_json(folder / HF_CONFIG, config)
    stub = {
        "model_type": REFUSED_TYPE.format(reason=reason),
        "architectures": ["MinimlModelFolder"],
        "miniml": {"loads_in_transformers": False, "reason": reason, "config": HF_CONFIG},
    }
    for key in ("id2label", "label2id"):  # so a reader still sees the labels
        if key in config:
            stub[key] = config[key]
    atomic_write_json(folder / CONFIG, stub)


def fold_temperature(folder: Path, temperature: float) -> bool:
    """Divide the classification layer of an ``hf`` folder's weights by ``temperature``; False when the
    layer cannot be told apart (then nothing is changed)."""
    from safetensors.torch import load_file, save_file
    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, AutoConfig

    folder = Path(folder)
    config = AutoConfig.from_pretrained(str(folder))
    try:
        model_class: Any = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        return False
    prefix = f"{model_class.base_model_prefix}."
    tensors = load_file(str(folder / WEIGHTS))
    heads = [
        key[: -len(".weight")]
        for key, t in tensors.items()
        if key.endswith(".weight") and t.ndim == 2 and t.shape[0] == config.num_labels
        if not key.startswith(prefix)
    ]
    if len(heads) != 1:
        return False
    for key in (f"{heads[0]}.weight", f"{heads[0]}.bias"):
        if key in tensors:
            tensors[key] = (tensors[key].double() / temperature).to(tensors[key].dtype).contiguous()
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / WEIGHTS)
    return True

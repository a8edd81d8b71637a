"""PyTorch dynamic int8, recorded in ``miniml.json`` by ``miniml optimize --int8`` and applied at load time.

The folder keeps fp32 weights; every runtime that loads a torch folder (classifier or generator) quantizes
it again through :func:`apply_saved_quantization`, so the optimized model and the served one are the same.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo

TORCH_DYNAMIC = {"method": "torch_dynamic", "modules": ["Linear"], "dtype": "qint8"}


def is_quantized(info: ModelInfo) -> bool:
    """Whether the folder records a quantization to re-apply when it loads."""
    return bool((info.model_extra or {}).get("quantization"))


def apply_saved_quantization(module: nn.Module, info: Any) -> nn.Module:
    """Re-apply the int8 quantization a torch model folder records (its weights are stored fp32)."""
    spec = dict((info.model_extra or {}).get("quantization") or {})
    if spec.get("method") != "torch_dynamic":
        raise ModelError(f"model {info.name} records unknown quantization {spec.get('method')!r}")
    return quantize_torch_dynamic(module)


def quantize_torch_dynamic(module: nn.Module) -> nn.Module:
    """PyTorch dynamic int8 quantization of every ``nn.Linear`` (weights int8, activations per batch)."""
    import torch

    return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)

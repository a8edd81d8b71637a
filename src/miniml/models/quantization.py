"""8-bit / 4-bit loading through bitsandbytes: CUDA only.

On a machine without a CUDA GPU quantized loading cannot work (bitsandbytes kernels are GPU code), so it falls
back to full precision with one logged line saying why, instead of failing deep inside a library. A CUDA
machine without bitsandbytes gets a clear error naming the extra to install (``miniml[gpu]``). fp16 / bf16
mixed precision is the training engine's ``precision`` key, which falls back the same way.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

from miniml.errors import ModelError

log = logging.getLogger(__name__)

Quantization = Literal["none", "8bit", "4bit"]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@functools.cache
def _say_no_gpu(kind: str) -> None:
    """Log once per process (a warm start loads two checkpoints; one line is enough)."""
    log.warning(
        "%s loading needs a CUDA GPU (bitsandbytes kernels are CUDA-only) and none was found; "
        "loading the model in full precision instead",
        kind,
    )


def quantization_config(kind: Quantization) -> Any | None:
    """A ``BitsAndBytesConfig`` for ``kind``, or None (no quantization, or no GPU: logged)."""
    if kind == "none":
        return None
    if not cuda_available():
        _say_no_gpu(kind)
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError(
            f"{kind} loading needs the bitsandbytes package", hint="pip install 'miniml[gpu]'"
        ) from None
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if bf16_supported() else torch.float16,
    )

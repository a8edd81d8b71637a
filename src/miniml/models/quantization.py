"""8-bit / 4-bit loading (bitsandbytes) and fp16 / bf16 mixed precision: CUDA only.

On a machine without a CUDA GPU these settings cannot work (bitsandbytes kernels and half-precision autocast
are GPU features), so each one falls back to full precision with one logged line saying why, instead of
failing deep inside a library. A CUDA machine without bitsandbytes gets a clear error naming the extra to
install (``miniml[gpu]``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from miniml.errors import ModelError

log = logging.getLogger(__name__)

Quantization = Literal["none", "8bit", "4bit"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def quantization_config(kind: Quantization) -> Any | None:
    """A ``BitsAndBytesConfig`` for ``kind``, or None (no quantization, or no GPU: logged)."""
    if kind == "none":
        return None
    if not cuda_available():
        log.warning(
            "%s loading needs a CUDA GPU (bitsandbytes kernels are CUDA-only) and none was found; "
            "loading the model in full precision instead",
            kind,
        )
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


def mixed_precision(requested: Precision) -> Literal["fp32", "fp16", "bf16"]:
    """The precision training will really use; fp16/bf16 without a GPU fall back to fp32 (logged)."""
    if requested == "fp32":
        return "fp32"
    if not cuda_available():
        if requested != "auto":
            log.warning(
                "%s mixed precision needs a CUDA GPU and none was found; training in fp32 on the CPU",
                requested,
            )
        return "fp32"
    if requested == "bf16" and not bf16_supported():
        log.warning("this GPU does not support bf16; using fp16 mixed precision instead")
        return "fp16"
    if requested == "auto":
        return "bf16" if bf16_supported() else "fp16"
    return requested

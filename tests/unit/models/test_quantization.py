"""8-bit / 4-bit loading and fp16 / bf16: a clear message and full precision without a CUDA GPU."""

from __future__ import annotations

import logging

import pytest
import torch

from miniml.models.quantization import mixed_precision, quantization_config

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA GPU")


@pytest.mark.parametrize("kind", ["8bit", "4bit"])
def test_quantized_loading_falls_back_on_cpu_and_says_why(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="miniml.models.quantization"):
        assert quantization_config(kind) is None  # type: ignore[arg-type]
    assert f"{kind} loading needs a CUDA GPU" in caplog.text


def test_no_quantization_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert quantization_config("none") is None
    assert caplog.text == ""


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_falls_back_to_fp32_on_cpu(precision: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="miniml.models.quantization"):
        assert mixed_precision(precision) == "fp32"  # type: ignore[arg-type]
    assert f"{precision} mixed precision needs a CUDA GPU" in caplog.text
    assert mixed_precision("auto") == "fp32"

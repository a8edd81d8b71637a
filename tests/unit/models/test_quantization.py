"""8-bit / 4-bit loading: a clear message and full precision without a CUDA GPU."""

from __future__ import annotations

import logging

import pytest
import torch

from miniml.models.quantization import _say_no_gpu, quantization_config

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


def test_quantization_without_lora_is_a_config_error() -> None:
    from pydantic import ValidationError

    from miniml.tasks.causal_lm import CausalLMSettings

    with pytest.raises(ValidationError, match=r"cannot be trained directly: add a model\.lora section"):
        CausalLMSettings(base="gpt2", quantization="8bit")


def test_quantized_lora_training_on_cpu_trains_in_full_precision(caplog: pytest.LogCaptureFixture) -> None:
    import tiny_generative as tg
    from miniml.tasks import causal_lm, get_task

    _say_no_gpu.cache_clear()
    settings = tg.settings_for(
        "gpt2", tg.model_path("gpt2"), quantization="4bit", lora={"target_modules": ["c_attn"]}
    )
    with caplog.at_level(logging.WARNING, logger="miniml.models.quantization"):
        loaded = causal_lm.load_for_training(settings)
    get_task("causal_lm").prepare_for_training(loaded, settings)
    assert "4bit loading needs a CUDA GPU" in caplog.text
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert tg.train_steps(loaded, causal_lm.make_format(settings, loaded.tokenizer), steps=3)[-1] > 0

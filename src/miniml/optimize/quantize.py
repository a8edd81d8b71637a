"""int8 quantization of ONNX graphs: onnxruntime dynamic / static (calibrated).

PyTorch dynamic int8 of ``nn.Linear`` is applied when a torch folder loads
(:mod:`miniml.runtime.quantization`).

Before quantizing a BERT-like graph, onnxruntime's transformer optimizer fuses attention, LayerNorm and GELU
subgraphs into single kernels (fp32, checked for parity like the export); the quantizer then turns the fused
Attention and every MatMul/Gather into int8 kernels.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miniml.errors import ModelError

# model_type of transformers configs → the onnxruntime optimizer's model family
FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "camembert": "bert"}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """onnxruntime's tools print and log progress at INFO; keep the user's terminal to our own lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def fuse_transformer(src: Path, dst: Path, facts: dict[str, Any]) -> dict[str, int] | None:
    """Fuse a BERT-like graph into ``dst``; None (and no file) when the model family has no fusions."""
    family = FUSABLE.get(str(facts.get("model_type") or ""))
    if family is None or not facts.get("num_heads"):
        return None
    from onnxruntime.transformers import optimizer

    with quiet():
        model = optimizer.optimize_model(
            str(src),
            model_type=family,
            num_heads=int(facts["num_heads"]),
            hidden_size=int(facts["hidden_size"]),
            opt_level=1,
            use_gpu=False,
        )
        model.save_model_to_file(str(dst))
    stats = model.get_fused_operator_statistics()
    return {k: int(v) for k, v in stats.items() if v}


def _default_float() -> dict[str, Any]:
    # fused contrib ops (Attention, SkipLayerNormalization) defeat shape inference; their outputs are fp32
    import onnx

    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


def quantize_onnx_dynamic(src: Path, dst: Path, *, per_channel: bool, reduce_range: bool) -> dict[str, Any]:
    """Weights to int8 ahead of time, activations quantized on the fly per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet():
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                # EmbeddingBag exports as a Loop whose body gathers the table: quantize inside it too
                extra_options={**_default_float(), "EnableSubgraph": True},
            )
    except Exception as err:  # onnxruntime's quantizer raises bare RuntimeError/ValueError
        raise ModelError(f"int8 dynamic quantization failed: {str(err).splitlines()[0][:200]}") from None
    return {
        "method": "onnx_dynamic",
        "weight_type": "int8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
    }


class TextCalibrationReader:
    """Feeds featurized calibration texts to onnxruntime's calibrator, a few texts per batch."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._feeds):
            return None
        self._pos += 1
        return self._feeds[self._pos - 1]

    def rewind(self) -> None:
        self._pos = 0


def quantize_onnx_static(
    src: Path, dst: Path, feeds: Sequence[dict[str, np.ndarray]], *, per_channel: bool, method: str
) -> dict[str, Any]:
    """Weights and activations to int8 (QDQ), activation ranges calibrated on real texts."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    methods["percentile"] = CalibrationMethod.Percentile
    reader: Any = TextCalibrationReader(feeds)
    try:
        with quiet():
            quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                # int8 activations are fine for matmuls; keep everything else in fp32
                op_types_to_quantize=["MatMul", "Gemm"],
                extra_options={**_default_float(), "ActivationSymmetric": True},
            )
    except Exception as err:
        raise ModelError(f"int8 static quantization failed: {str(err).splitlines()[0][:200]}") from None
    return {
        "method": "onnx_static",
        "calibration": method,
        "samples_batches": len(feeds),
        "per_channel": per_channel,
    }

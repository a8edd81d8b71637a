"""int8: ONNX Runtime dynamic and static quantization, PyTorch dynamic quantization, on tiny real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_onnx_export import TEXTS, optimize_folder

from miniml.modelfolder import read_info
from miniml.optimize.measure import model_size_bytes
from miniml.tasks import load_predictor


@pytest.mark.parametrize(("model", "smaller"), [("bert_folder", 1.5), ("bag_folder", 3.0)])
def test_onnx_dynamic_int8(
    model: str, smaller: float, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = request.getfixturevalue(model)
    out = optimize_folder(folder, tmp_path, onnx=True, int8=True)
    info = read_info(out)
    int8 = info.lineage["steps"][-1]
    assert int8["method"] == "onnx_dynamic" and int8["per_channel"] and int8["reduce_range"]
    # int8 weights: several times smaller (tiny BERT less so: graph overhead, unquantized position table)
    assert model_size_bytes(out) * smaller < model_size_bytes(folder)
    torch_probs = load_predictor(folder, threads=1).predict_proba(TEXTS)
    int8_probs = load_predictor(out, threads=1).predict_proba(TEXTS)
    diff = np.abs(int8_probs - torch_probs).max()
    assert 0 < diff < 0.05  # quantized: close, not identical


def test_onnx_static_int8_with_calibration(bag_folder: Path, tmp_path: Path) -> None:
    out = optimize_folder(bag_folder, tmp_path, onnx=True, int8=True, calibration="tinyreviews")
    step = read_info(out).lineage["steps"][-1]
    assert step["method"] == "onnx_static" and step["samples_batches"] >= 1
    probs = load_predictor(out, threads=1).predict_proba(TEXTS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_torch_dynamic_int8_is_reapplied_on_load(bert_folder: Path, tmp_path: Path) -> None:
    import torch

    out = optimize_folder(bert_folder, tmp_path, int8=True)
    info = read_info(out)
    assert info.runtime == "torch" and info.model_extra["quantization"]["method"] == "torch_dynamic"
    predictor = load_predictor(out, threads=1)
    linears = [m for m in predictor.module.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert linears, "the loaded model must run int8 Linear kernels"
    diff = np.abs(
        predictor.predict_proba(TEXTS) - load_predictor(bert_folder, threads=1).predict_proba(TEXTS)
    )
    assert diff.max() < 0.05

"""Export tiny real models, check parity against PyTorch on real texts, and load them via load_predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from optimize_support import texts_for

from miniml.data.dataset import Dataset
from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo, read_info
from miniml.optimize.classifier import build, eval_data
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.onnx_export import check_exportable, exportable_architectures
from miniml.optimize.run import check_support
from miniml.runtime import resolve
from miniml.runtime.onnx_predictor import OnnxPredictor
from miniml.tasks import get_task, load_predictor

TEXTS = [*texts_for("pos", 5, 1), *texts_for("neg", 5, 2), "", "a " * 200]


def optimize_folder(folder: Path, tmp_path: Path, **flags: object) -> Path:
    cfg = OptimizeConfig.model_validate({**flags, "output": str(tmp_path / "out"), "dry_run": True})
    info = read_info(folder)
    out, _ = build(
        str(folder), resolve(folder), info, cfg, eval_data(info, cfg), get_task(info.task).optimize
    )
    return out


@pytest.mark.parametrize("model", ["bert_folder", "bag_folder"])
def test_export_matches_torch(model: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    folder = request.getfixturevalue(model)
    out = optimize_folder(folder, tmp_path, onnx=True)
    info = read_info(out)
    assert (
        info.runtime == "onnx" and (out / "model.onnx").is_file() and not (out / "model.safetensors").exists()
    )
    export = info.lineage["steps"][0]
    assert export["step"] == "onnx_export" and export["max_abs_diff"] <= 1e-4
    assert info.lineage["parent"]["path"] == str(folder.resolve())
    torch_probs = load_predictor(folder, threads=1).predict_proba(TEXTS)
    onnx_predictor = load_predictor(out, threads=1)
    assert isinstance(onnx_predictor, OnnxPredictor)
    onnx_probs = onnx_predictor.predict_proba(TEXTS)
    assert onnx_probs.shape == (len(TEXTS), 3) and onnx_probs.dtype == np.float32
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    # batch size 1 and an empty batch go through the same dynamic axes
    np.testing.assert_allclose(onnx_predictor.predict_proba(TEXTS[:1]), torch_probs[:1], atol=1e-4)
    assert onnx_predictor.predict_proba([]).shape == (0, 3)


def test_bert_graph_is_fused(bert_folder: Path, tmp_path: Path) -> None:
    steps = read_info(optimize_folder(bert_folder, tmp_path, onnx=True)).lineage["steps"]
    fuse = next(s for s in steps if s["step"] == "fuse")
    assert fuse["fused"].get("Attention", 0) == 2 and fuse["max_abs_diff"] <= 1e-4


def test_unsupported_task_and_architecture() -> None:
    assert {"hf", "hashing_bag"} <= set(exportable_architectures())
    info = ModelInfo(name="gen", task="seq2seq", architecture="hf")
    with pytest.raises(
        ModelError, match="ONNX export supports classification, embedding models; this is a seq2seq"
    ):
        check_support(info, get_task("seq2seq").optimize, OptimizeConfig(onnx=True))
    with pytest.raises(ModelError, match="cannot handle architecture 'mystery'"):
        check_exportable("mystery")


def test_parity_failure_writes_nothing(bag_folder: Path, tmp_path: Path, dataset: Dataset) -> None:
    cfg = OptimizeConfig(onnx=True, parity_tolerance=1e-12, output=tmp_path / "out", dry_run=True)
    info = read_info(bag_folder)
    with pytest.raises(ModelError, match="parity_tolerance"):
        build(
            str(bag_folder),
            resolve(bag_folder),
            info,
            cfg,
            eval_data(info, cfg),
            get_task(info.task).optimize,
        )
    assert not (tmp_path / "out").exists()

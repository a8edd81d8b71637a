"""Pruning gives the requested, measured sparsity; head pruning shrinks the layers and still exports."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_onnx_export import TEXTS, optimize_folder

from miniml.errors import ModelError
from miniml.modelfolder import read_info
from miniml.models.folder import load_model_folder
from miniml.optimize.prune import prune_global_unstructured, prune_heads, sparsity
from miniml.tasks import load_predictor


@pytest.mark.parametrize("amount", [0.3, 0.7])
def test_global_unstructured_hits_requested_sparsity(bert_folder: Path, amount: float) -> None:
    module = load_model_folder(bert_folder).module
    assert sparsity(module)["linear_sparsity"] < 0.01
    facts = prune_global_unstructured(module, amount)
    assert facts["linear_sparsity"] == pytest.approx(amount, abs=0.002)
    assert sparsity(module)["linear_sparsity"] == pytest.approx(amount, abs=0.002)  # permanent, no masks
    assert not any(name.endswith("_orig") for name, _ in module.named_parameters())


def test_pruned_torch_folder_loads_with_measured_sparsity(bag_folder: Path, tmp_path: Path) -> None:
    out = optimize_folder(bag_folder, tmp_path, prune=0.5)
    step = read_info(out).lineage["steps"][0]
    assert step["method"] == "global_unstructured" and step["linear_sparsity"] == pytest.approx(0.5, abs=0.01)
    module = load_model_folder(out).module
    assert sparsity(module)["linear_sparsity"] == pytest.approx(0.5, abs=0.01)


def test_head_pruning_removes_heads_and_exports(bert_folder: Path, tmp_path: Path) -> None:
    module = load_model_folder(bert_folder).module
    before = sum(p.numel() for p in module.parameters())
    facts = prune_heads(load_model_folder(bert_folder).module, 0.5)
    assert facts["heads_removed"] == 4 and facts["heads_total"] == 8
    assert all(n >= 1 for n in facts["heads_per_layer"])
    out = optimize_folder(bert_folder, tmp_path, onnx=True, prune=0.5, pruning={"method": "heads"})
    steps = read_info(out).lineage["steps"]
    assert [s["step"] for s in steps] == ["prune", "onnx_export"]  # no fusion: heads differ per layer
    assert steps[0]["parameters_removed"] > 0 and before > 0
    assert load_predictor(out, threads=1).predict_proba(TEXTS).shape == (len(TEXTS), 3)


def test_head_pruning_needs_attention(bag_folder: Path) -> None:
    with pytest.raises(ModelError, match="no BERT-like attention heads"):
        prune_heads(load_model_folder(bag_folder).module, 0.5)

"""Fine-tuning after pruning: pruned weights stay zero, the loss goes down, quality comes back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from optimize_support import LABELS, make_hashing_bag
from test_onnx_export import TEXTS, optimize_folder

from miniml.data.dataset import Dataset
from miniml.modelfolder import read_info
from miniml.models.folder import ClassifierFolder, load_model_folder
from miniml.optimize.config import FinetuneSettings
from miniml.optimize.finetune import finetune
from miniml.optimize.prune import sparsity, unstructured_masks
from miniml.tasks import load_predictor


def accuracy(loaded: ClassifierFolder, dataset: Dataset) -> float:
    test = dataset.split("test")
    loaded.module.eval()
    with torch.inference_mode():
        best = loaded.module(**loaded.featurizer.batch(test["input"].tolist()))["logits"].argmax(-1)
    return float((np.array(LABELS)[best.numpy()] == test["target"].to_numpy()).mean())


@pytest.fixture
def fitted_bag(tmp_path: Path, dataset: Dataset) -> Path:
    return make_hashing_bag(tmp_path / "fitted", dataset, fit=True)


def test_finetune_keeps_masks_and_recovers_quality(fitted_bag: Path, dataset: Dataset) -> None:
    loaded = load_model_folder(fitted_bag)
    fitted = accuracy(loaded, dataset)
    settings = FinetuneSettings(steps=30, learning_rate=0.05, batch_size=16)
    with unstructured_masks(loaded.module, 0.9):  # hard: 90% of the Linear weights
        pruned = accuracy(loaded, dataset)
        facts = finetune(
            loaded.module, loaded.featurizer, loaded.spec, LABELS, dataset.split("train"), settings
        )
    recovered = accuracy(loaded, dataset)
    assert sparsity(loaded.module)["linear_sparsity"] == pytest.approx(0.9, abs=0.005)  # masks held
    assert not any(name.endswith("_orig") for name, _ in loaded.module.named_parameters())
    assert facts["train_loss_after"] < facts["train_loss_before"]
    assert pruned < fitted - 0.2, "pruning this hard must hurt, or the test shows nothing"
    assert recovered > pruned + 0.2


def test_optimize_records_finetune_and_real_sparsity(fitted_bag: Path, tmp_path: Path) -> None:
    finetune_settings = {"steps": 10, "learning_rate": 0.05, "batch_size": 8}
    out = optimize_folder(fitted_bag, tmp_path, prune=0.8, finetune=finetune_settings)
    prune_step, tune_step = read_info(out).lineage["steps"]
    assert prune_step["step"] == "prune" and prune_step["measured"] == "after fine-tuning"
    assert prune_step["linear_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert tune_step["step"] == "finetune" and tune_step["steps"] == 10 and tune_step["optimizer"] == "adamw"
    assert tune_step["train_loss_after"] < tune_step["train_loss_before"]
    assert sparsity(load_model_folder(out).module)["linear_sparsity"] == pytest.approx(0.8, abs=0.01)


def test_finetuned_bert_still_exports(bert_folder: Path, tmp_path: Path) -> None:
    out = optimize_folder(bert_folder, tmp_path, onnx=True, prune=0.5, finetune={"steps": 3, "batch_size": 8})
    steps = read_info(out).lineage["steps"]
    assert [s["step"] for s in steps][:3] == ["prune", "finetune", "onnx_export"]
    assert steps[0]["linear_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert load_predictor(out, threads=1).predict_proba(TEXTS).shape == (len(TEXTS), 3)

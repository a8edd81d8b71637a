import numpy as np
import pandas as pd
import pytest
import torch

from miniml.errors import ConfigError, DataError
from miniml.models.hashing import HashingFeaturizer
from miniml.tasks import get_task
from miniml.tasks.classification import (
    ClassificationConfig,
    collate,
    examples,
    label_ids,
    label_ranks,
    ordinal_targets,
    soft_target_loss,
)
from miniml.tasks.classification_serving import top_k_answers


def test_examples_collate_decode() -> None:
    feat = HashingFeaturizer(buckets=1024)
    rows = examples(pd.DataFrame({"input": ["good", "bad"], "target": ["pos", "neg"]}), feat, ["neg", "pos"])
    batch = collate(feat, rows)
    assert batch["labels"].tolist() == [1, 0]
    assert batch["offsets"].tolist()[0] == 0
    with pytest.raises(DataError, match="'meh'"):
        label_ids(["neg", "pos"], ["meh"])


def test_one_top_k_decoder_for_predict_and_http() -> None:
    probs = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    answers = top_k_answers(probs, ["neg", "pos"], 1)
    assert answers[0] == {
        "label": "pos",
        "score": pytest.approx(0.8),
        "top_k": [{"label": "pos", "score": pytest.approx(0.8)}],
    }
    every = top_k_answers(np.array([[0.2, 0.8]]), ["neg", "pos"])  # k=None: every label, best first
    assert [x["label"] for x in every[0]["top_k"]] == ["pos", "neg"]
    assert top_k_answers(np.array([[0.123456789, 0.876543211]]), ["a", "b"])[0]["score"] == 0.876543
    assert top_k_answers(np.zeros((0, 2)), ["a", "b"]) == []


def test_the_task_refuses_unknown_validation_metrics() -> None:
    task = get_task("classification")
    base = {"model_name": "m", "dataset": "d", "model": {"kind": "hashing_bag"}}
    task.check_config(task.config.model_validate({**base, "metric_for_best": "f1/b"}), ["a", "b"])
    with pytest.raises(ConfigError, match="f1/<label>"):
        task.check_config(task.config.model_validate({**base, "metric_for_best": "bleu"}), ["a", "b"])


def test_ordinal_targets_favour_near_labels_and_keep_the_argmax() -> None:
    targets = ordinal_targets(["1", "2", "3", "4", "5"], alpha=1.0)
    assert torch.allclose(targets.sum(dim=1), torch.ones(5))
    assert targets.argmax(dim=1).tolist() == [0, 1, 2, 3, 4]
    assert targets[0, 1] > targets[0, 2] > targets[0, 4] > 0  # a 2-star guess for a 1 costs less than a 5
    assert torch.allclose(targets[1, 0], targets[1, 2])
    assert label_ranks(["1", "10", "2"]) == [1.0, 10.0, 2.0]  # numbers by value, not by text order
    assert label_ranks(["low", "mid", "high"]) == [0.0, 1.0, 2.0]  # else by position


def test_soft_target_loss_tends_to_cross_entropy_for_sharp_targets() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 2])
    sharp = soft_target_loss(ordinal_targets(["1", "2", "3"], alpha=50.0))({"logits": logits}, labels)
    assert torch.isclose(sharp, torch.nn.functional.cross_entropy(logits, labels), atol=1e-5)
    soft = soft_target_loss(ordinal_targets(["1", "2", "3"], alpha=0.5))({"logits": logits}, labels)
    assert soft > sharp  # spreading the target over neighbours costs confident predictions


def test_ordinal_alpha_excludes_label_smoothing() -> None:
    with pytest.raises(ValueError, match="label_smoothing or ordinal_alpha"):
        ClassificationConfig(
            model_name="m", dataset="d", model={"kind": "hashing_bag"}, ordinal_alpha=1, label_smoothing=0.1
        )

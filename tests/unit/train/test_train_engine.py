import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from miniml.train.config import TrainConfig
from miniml.train.engine import (
    build_optimizer,
    label_ranks,
    ordinal_targets,
    param_groups,
    precision_flags,
    soft_target_loss,
)


def tiny_bert() -> torch.nn.Module:
    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=3,
    )
    return AutoModelForSequenceClassification.from_config(config)


def lr_of(groups: list[dict], module: torch.nn.Module, name: str) -> tuple[float, float]:
    param = dict(module.named_parameters())[name]
    group = next(g for g in groups if any(p is param for p in g["params"]))
    return group["lr"], group["weight_decay"]


def test_layerwise_decay_head_multiplier_and_no_decay_on_norms() -> None:
    model = {"kind": "pretrained", "layerwise_lr_decay": 0.5, "head_lr_multiplier": 10}
    config = TrainConfig(model_name="m", dataset="d", model=model, learning_rate=1.0, weight_decay=0.1)
    module = tiny_bert()
    groups = param_groups(module, config)
    assert lr_of(groups, module, "classifier.weight") == (10.0, 0.1)
    assert lr_of(groups, module, "bert.encoder.layer.2.attention.self.query.weight") == (0.5, 0.1)
    assert lr_of(groups, module, "bert.encoder.layer.0.output.LayerNorm.weight") == (0.125, 0.0)
    assert lr_of(groups, module, "bert.embeddings.word_embeddings.weight") == (0.0625, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))


def test_sparse_embeddings_need_sparse_optimizer() -> None:
    with pytest.raises(ValueError, match="sgd or adagrad"):
        TrainConfig(model_name="m", dataset="d", model={"kind": "hashing_bag", "sparse": True})
    config = TrainConfig(
        model_name="m", dataset="d", model={"kind": "hashing_bag", "sparse": True}, optimizer="adagrad"
    )
    from miniml.models.hashing_bag import HashingBag

    module = HashingBag(1024, 4, 2, sparse=True)
    assert isinstance(build_optimizer(module, config), torch.optim.Adagrad)
    assert lr_of(param_groups(module, config), module, "embedding.weight")[1] == 0.0


def test_precision_on_cpu_is_fp32() -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    assert precision_flags("auto") == {} and precision_flags("bf16") == {}


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
        TrainConfig(
            model_name="m", dataset="d", model={"kind": "hashing_bag"}, ordinal_alpha=1, label_smoothing=0.1
        )

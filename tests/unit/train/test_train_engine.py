import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from miniml.tasks.classification import ClassificationConfig
from miniml.train.engine import build_optimizer, param_groups, precision_flags


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
    config = ClassificationConfig(
        model_name="m", dataset="d", model=model, learning_rate=1.0, weight_decay=0.1
    )
    module = tiny_bert()
    groups = param_groups(module, config)
    assert lr_of(groups, module, "classifier.weight") == (10.0, 0.1)
    assert lr_of(groups, module, "bert.encoder.layer.2.attention.self.query.weight") == (0.5, 0.1)
    assert lr_of(groups, module, "bert.encoder.layer.0.output.LayerNorm.weight") == (0.125, 0.0)
    assert lr_of(groups, module, "bert.embeddings.word_embeddings.weight") == (0.0625, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))


def test_sparse_embeddings_need_sparse_optimizer() -> None:
    with pytest.raises(ValueError, match="sgd or adagrad"):
        ClassificationConfig(model_name="m", dataset="d", model={"kind": "hashing_bag", "sparse": True})
    config = ClassificationConfig(
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

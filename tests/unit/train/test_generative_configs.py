"""The generative train configs: task picks the schema, examples load, bad keys are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniml.errors import ConfigError
from miniml.tasks.causal_lm import CausalLMConfig
from miniml.tasks.seq2seq import Seq2SeqConfig
from miniml.train.config import TrainConfig, load_train_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(
    ("name", "schema"),
    [("text2sql", Seq2SeqConfig), ("summarize", Seq2SeqConfig), ("lora", CausalLMConfig)],
)
def test_example_train_configs_load_through_their_schema(name: str, schema: type) -> None:
    config = load_train_config(EXAMPLES / name / "train.yaml")
    assert type(config) is schema and isinstance(config, TrainConfig)
    assert config.model_name == name and config.metric_for_best == "loss"


def test_lora_example_asks_for_8bit_and_fp16() -> None:
    config = load_train_config(EXAMPLES / "lora" / "train.yaml")
    assert config.model.quantization == "8bit" and config.precision == "fp16"  # type: ignore[union-attr]
    assert config.model.lora is not None and config.model.lora.merge  # type: ignore[union-attr]


def test_task_can_be_switched_from_the_command_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name: x\ndataset: d\nmodel: {base: gpt2}\n", encoding="utf-8")
    config = load_train_config(cfg, ["task=causal_lm", "model.lora.r=4"])
    assert isinstance(config, CausalLMConfig) and config.model.lora is not None
    assert config.model.lora.r == 4


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["task=seq2seq", "model.warm_start.encoder=minilm"], "exactly one of model.base"),
        (["task=translation"], "unknown task 'translation'"),
        (["task=causal_lm", "model.lora.rank=4"], "model.lora.rank: unknown key"),
        (["task=causal_lm", "model.quantization=3bit"], "model.quantization"),
    ],
)
def test_bad_generative_configs_are_one_clear_error(
    tmp_path: Path, overrides: list[str], needle: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name: x\ndataset: d\nmodel: {base: gpt2}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_train_config(cfg, overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)

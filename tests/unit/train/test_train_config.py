from pathlib import Path

import pytest

from miniml.config import load_config, validate
from miniml.errors import ConfigError
from miniml.tasks.classification import ClassificationConfig
from miniml.train.config import load_train_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/train.yaml")), ids=lambda p: p.parent.name)
def test_example_configs_load(path: Path) -> None:
    config = load_train_config(path)  # the schema its `task` selects
    assert config.model_name == path.parent.name


def test_examples_exist() -> None:
    assert {p.parent.name for p in EXAMPLES.glob("*/train.yaml")} >= {"nordic-langid", "reviews"}


def test_precedence_and_errors() -> None:
    base = {"MINIML_TRAIN__EPOCHS": "2"}
    config = load_config(
        ClassificationConfig,
        None,
        ["model_name=m", "dataset=d", "model.kind=hashing_bag", "model.dim=8", "batch_size=4"],
        environ=base,
    )
    assert (config.epochs, config.model.dim, config.batch_size) == (2, 8, 4)
    with pytest.raises(ConfigError, match="checkpoint_steps"):
        validate(
            ClassificationConfig,
            {
                "model_name": "m",
                "dataset": "d",
                "model": {"kind": "hashing_bag"},
                "eval_steps": 3,
                "checkpoint_steps": 4,
            },
        )
    with pytest.raises(ConfigError, match="model_name"):
        load_config(ClassificationConfig, None, ["model_name=bad name!", "dataset=d", "model.kind=bilstm"])

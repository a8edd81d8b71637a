from __future__ import annotations

import pytest

from miniml.config import load_config
from miniml.errors import ConfigError
from miniml.optimize.config import OptimizeConfig


def test_flags_and_defaults() -> None:
    cfg = load_config(OptimizeConfig, None, ["onnx=true", "int8=true", "prune=0.3"])
    assert (cfg.onnx, cfg.int8, cfg.prune) == (True, True, 0.3)
    assert cfg.export.opset >= 17 and cfg.measure.batch_sizes == [1, 32]
    assert cfg.max_quality_drop == 0.01 and not cfg.force


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_sparsity_outside_open_unit_interval_is_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match="prune"):
        load_config(OptimizeConfig, None, [f"prune={value}"])


def test_nothing_to_do_is_an_error() -> None:
    with pytest.raises(ConfigError, match="nothing to do"):
        load_config(OptimizeConfig, None, [])


def test_calibration_needs_int8() -> None:
    with pytest.raises(ConfigError, match="add int8"):
        load_config(OptimizeConfig, None, ["onnx=true", "calibration=sst5"])


def test_environment_section(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(OptimizeConfig, None, ["onnx=true"], environ={"MINIML_OPTIMIZE__MEASURE__THREADS": "2"})
    assert cfg.measure.threads == 2


def test_example_configs_load() -> None:
    from pathlib import Path

    examples = Path(__file__).resolve().parents[3] / "examples"
    reviews = load_config(OptimizeConfig, examples / "reviews" / "optimize.yaml")
    assert reviews.onnx and reviews.int8 and reviews.measure.threads == 1
    summarize = load_config(OptimizeConfig, examples / "summarize" / "optimize.yaml")
    assert summarize.int8 and not summarize.onnx and summarize.measure.eval_limit == 50


def test_finetune_needs_prune_and_has_a_flag() -> None:
    from miniml.optimize.config import flag_overrides

    with pytest.raises(ConfigError, match="add prune"):
        load_config(OptimizeConfig, None, ["int8=true", "finetune.steps=10"])
    flags = {"prune": 0.5, "finetune_steps": 20}
    cfg = load_config(OptimizeConfig, None, flag_overrides(flags, force=False))
    assert cfg.prune == 0.5 and cfg.finetune.steps == 20 and cfg.finetune.split == "train"
    assert load_config(OptimizeConfig, None, ["prune=0.5"]).finetune.steps == 0  # off by default

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


def test_example_config_loads() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "reviews" / "optimize.yaml"
    cfg = load_config(OptimizeConfig, path)
    assert cfg.onnx and cfg.int8 and cfg.measure.threads == 1

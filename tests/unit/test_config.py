from pathlib import Path

import pytest
from pydantic import Field

from miniml.config import StepConfig, load_config, parse_overrides
from miniml.errors import ConfigError


class Inner(StepConfig):
    lr: float = 1e-3
    layers: list[int] = Field(default_factory=lambda: [1])


class Demo(StepConfig):
    env_section = "demo"
    name: str
    epochs: int = Field(1, ge=1)
    inner: Inner = Field(default_factory=Inner)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_precedence_file_env_set(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nepochs: 2\ninner: {lr: 0.1}\n")
    env = {"MINIML_DEMO__EPOCHS": "3", "MINIML_DEMO__INNER__LR": "0.2", "OTHER": "x"}
    cfg = load_config(Demo, path, ["epochs=4"], environ=env)
    assert cfg.epochs == 4  # --set beats env
    assert cfg.inner.lr == 0.2  # env beats file
    assert cfg.name == "a"


def test_set_parses_yaml_values() -> None:
    assert parse_overrides(["a.b=[1, 2]", "c=true", "d=x"]) == {"a": {"b": [1, 2]}, "c": True, "d": "x"}


def test_error_names_key_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nepochs: zero\n")
    with pytest.raises(ConfigError) as err:
        load_config(Demo, path, environ={})
    text = str(err.value)
    assert "epochs" in text and "--set" in text and "\n" not in text


def test_unknown_key_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epochz: unknown key"):
        load_config(Demo, write(tmp_path, "name: a\nepochz: 1\n"), environ={})
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(Demo, write(tmp_path, "name: [a\n"), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Demo, tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(Demo, write(tmp_path, "name: a\n"), ["epochs"], environ={})


def test_a_config_nested_100000_deep_is_a_one_line_error(tmp_path: Path) -> None:
    path = write(tmp_path, "name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"nests collections more than 100 levels deep \(at line 1"):
        load_config(Demo, path)


def test_yaml_errors_name_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nepochs: [1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3, column 1"):
        load_config(Demo, path)


def test_a_deep_override_value_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="more than 100 levels deep"):
        parse_overrides(["a=" + "[" * 100_000])
    assert parse_overrides(["a=[1, [2]]", "b=not: [valid"]) == {"a": [1, [2]], "b": "not: [valid"}

"""Pipeline files: every step config validated through its own schema, errors name the key, --set routing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from miniml.data.prepare import PrepareConfig
from miniml.errors import ConfigError
from miniml.optimize.config import OptimizeConfig
from miniml.pipeline.config import load_pipeline, split_overrides
from miniml.train import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
PIPELINES = sorted(EXAMPLES.glob("*/pipeline.yaml"))
DATA = {"name": "toy", "sources": [{"path": "rows.csv", "format": "csv", "input": "text", "target": "label"}]}
TRAIN = {"model_name": "toy", "dataset": "toy", "model": {"kind": "hashing_bag", "buckets": 1024, "dim": 8}}


def write(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    write(tmp_path, "data.yaml", DATA)
    write(tmp_path, "train.yaml", TRAIN)
    write(tmp_path, "serve.yaml", {"models": ["models:/toy@champion"]})
    return write(tmp_path, "pipeline.yaml", {"name": "toy", "data": "data.yaml", "train": "train.yaml"})


def test_shipped_examples_have_pipelines() -> None:
    assert {p.parent.name for p in PIPELINES} >= {"nordic-langid", "reviews"}


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.parent.name)
def test_example_pipelines_load_every_step(path: Path) -> None:
    pipeline = load_pipeline(path, environ={})
    assert pipeline.name == path.parent.name == pipeline.train.model_name
    assert isinstance(pipeline.data, PrepareConfig) and isinstance(pipeline.train, TrainConfig)
    assert pipeline.data.base_dir == path.parent.resolve()  # the data config's local paths: its own folder
    assert pipeline.serve is not None and pipeline.serve.models == [f"models:/{pipeline.name}@champion"]
    if path.parent.name == "reviews":
        assert (
            isinstance(pipeline.optimize, OptimizeConfig)
            and pipeline.optimize.onnx
            and pipeline.optimize.int8
        )


def test_steps_load_from_files_and_inline(pipeline_file: Path) -> None:
    pipeline = load_pipeline(pipeline_file, environ={})
    assert pipeline.data.name == "toy" and pipeline.data.base_dir == pipeline_file.parent.resolve()
    assert pipeline.train.model.dim == 8 and pipeline.optimize is None and pipeline.serve is None
    assert pipeline.config.evaluate.enabled and not pipeline.config.gate.required

    inline = write(
        pipeline_file.parent, "inline.yaml", {"name": "toy2", "train": TRAIN, "optimize": {"int8": True}}
    )
    pipeline = load_pipeline(inline, environ={})
    assert pipeline.data is None and pipeline.train.model_name == "toy" and pipeline.optimize.int8


def test_overrides_reach_the_step_they_name(pipeline_file: Path) -> None:
    raw = yaml.safe_load(pipeline_file.read_text())
    write(pipeline_file.parent, "pipeline.yaml", {**raw, "serve": "serve.yaml"})  # shorthand form
    pipeline = load_pipeline(
        pipeline_file,
        [
            "train.epochs=1",
            "train.model.dim=4",
            "data.split.seed=5",
            "gate.required=true",
            "serve.enabled=true",
        ],
        environ={"MINIML_TRAIN__BATCH_SIZE": "8", "MINIML_PIPELINE__GATE__MARGIN": "0.5"},
    )
    assert (pipeline.train.epochs, pipeline.train.model.dim, pipeline.train.batch_size) == (1, 4, 8)
    assert pipeline.data.split.seed == 5
    assert pipeline.config.gate.required and pipeline.config.gate.margin == 0.5
    assert pipeline.config.serve is not None and pipeline.config.serve.enabled
    assert pipeline.config.serve.config == "serve.yaml" and pipeline.serve.models == ["models:/toy@champion"]


def test_split_overrides() -> None:
    own, steps = split_overrides(
        ["train.epochs=1", "gate.margin=0.1", "train=other.yaml", "optimize.int8=true"]
    )
    assert own == ["gate.margin=0.1", "train=other.yaml"]
    assert steps == {"data": [], "train": ["epochs=1"], "optimize": ["int8=true"]}


def one_line_error(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, overrides or [], environ={})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_step_file_names_the_key(pipeline_file: Path) -> None:
    message = one_line_error(pipeline_file, ["train=nope/train.yaml"])
    assert message.startswith("pipeline toy: train: config file ")
    assert (
        str(pipeline_file.parent / "nope" / "train.yaml") in message and "relative to the pipeline" in message
    )
    assert "serve.config: config file" in one_line_error(pipeline_file, ["serve.config=missing.yaml"])


def test_bad_keys_name_the_step_and_the_key(pipeline_file: Path) -> None:
    message = one_line_error(pipeline_file, ["train.epochz=1"])
    assert message.startswith("pipeline toy: train: invalid config ") and "epochz: unknown key" in message
    assert "data: invalid config" in one_line_error(pipeline_file, ["data.split.train=2"])
    assert "optimize (inline): (root)" in one_line_error(pipeline_file, ["optimize.split=test"])  # no step
    assert "trian: unknown key" in one_line_error(pipeline_file, ["trian=train.yaml"])
    assert "gate.margin" in one_line_error(pipeline_file, ["gate.margin=-1"])
    write(pipeline_file.parent, "empty.yaml", {"name": "x"})
    assert "train: required key is missing" in one_line_error(pipeline_file.parent / "empty.yaml")


def test_cross_step_rules(pipeline_file: Path) -> None:
    message = one_line_error(pipeline_file, ["train.dataset=other"])
    assert "train.dataset is 'other' but the data step prepares 'toy'" in message
    assert "register_model is false" in one_line_error(pipeline_file, ["train.register_model=false"])


def test_pipeline_backend_section(pipeline_file: Path) -> None:
    """``pipeline run --backend ray`` is ``--set backend.type=ray``: one section for the data and train."""
    pipeline = load_pipeline(pipeline_file, ["backend.type=ray", "backend.workers=3"], environ={})
    assert pipeline.config.backend is not None
    assert (pipeline.config.backend.type, pipeline.config.backend.workers) == ("ray", 3)
    assert pipeline.train.backend.type == "local"  # the step's own section, replaced when the step runs
    assert load_pipeline(pipeline_file, environ={}).config.backend is None

"""The ``miniml pipeline run`` config: which step configs to chain, the gate, and whether to serve at the end.

A pipeline file names each step's own config, as a path relative to the pipeline file or inline::

    name: nordic-langid
    data: data.yaml            # PrepareConfig  (optional: without it, train.dataset must be prepared)
    train: train.yaml          # TrainConfig    (required)
    optimize: {onnx: true}     # OptimizeConfig (optional)
    evaluate: {split: test}
    gate: {metric: macro_f1, margin: 0.0, required: false}
    serve: serve.yaml          # ServeSettings  (optional; runs only with --serve or serve.enabled)
    backend: {type: ray}       # where data and train run (optional; else each step's own backend section)

Every step config is validated through its own schema before any step runs, so a typo in the last step
fails in a second, not after an hour of training. Overrides: ``--set train.epochs=1`` sets ``epochs`` of the
train step (file or inline), ``--set gate.required=true`` a key of the pipeline itself. Environment
variables keep their usual per-step form (``MINIML_TRAIN__EPOCHS``, ``MINIML_PIPELINE__GATE__MARGIN``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from miniml.compute import BackendConfig
from miniml.config import StepConfig, load_config
from miniml.errors import ConfigError, MinimlError

# steps whose config is another schema's file or mapping; ``--set STEP.key=value`` goes to that schema
STEP_KEYS = ("data", "train", "optimize")
StepSource = str | dict[str, Any]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluateStep(_Section):
    """Score the candidate version (loaded back from the registry) on a split; report under the state dir."""

    enabled: bool = Field(True, description="false: skip the step (train already scored the test split)")
    split: str = Field("test", min_length=1, description="dataset split to score")


class GateStep(_Section):
    """The promotion gate; unset keys fall back to the registry's gate settings for the model."""

    metric: str | None = Field(None, min_length=1, max_length=100, description="test metric to compare")
    margin: float | None = Field(None, ge=0.0, le=1e6, description="how much better the candidate must be")
    alias: str | None = Field(None, min_length=1, max_length=64, description="alias to move (champion)")
    force: bool = Field(False, description="move the alias even if the candidate does not win")
    required: bool = Field(False, description="exit 1 when the candidate is not promoted")


class ServeStep(_Section):
    """Serve at the end of the pipeline (in the foreground, like ``miniml serve --config``)."""

    config: str = Field(min_length=1, description="serve.yaml, relative to the pipeline file")
    enabled: bool = Field(False, description="serve without --serve")
    demo_key: bool = Field(False, description="create a key for this run and print a curl line")


class PipelineConfig(StepConfig):
    """What ``miniml pipeline run PIPELINE.yaml`` reads."""

    env_section: ClassVar[str] = "pipeline"

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="pipeline name (state under pipelines/NAME)"
    )
    data: StepSource | None = Field(None, description="data prepare config: a path or an inline mapping")
    train: StepSource = Field(description="train config: a path or an inline mapping")
    optimize: StepSource | None = Field(None, description="optimize config: a path or an inline mapping")
    evaluate: EvaluateStep = Field(default_factory=lambda: EvaluateStep.model_validate({}))
    gate: GateStep = Field(default_factory=lambda: GateStep.model_validate({}))
    serve: ServeStep | None = None
    backend: BackendConfig | None = Field(
        None, description="where the data and train steps run (replaces their own backend sections)"
    )
    base_dir: Path | None = Field(None, description="folder step paths are relative to (default: the file's)")


@dataclass
class Pipeline:
    """A pipeline with every step config loaded and validated."""

    config: PipelineConfig
    source: str  # the pipeline file, for messages
    data: Any  # PrepareConfig | None
    train: Any  # TrainConfig (or a generative subclass)
    optimize: Any  # OptimizeConfig | None
    serve: Any  # ServeSettings | None

    @property
    def name(self) -> str:
        return self.config.name


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``--set`` items for the pipeline itself, and per step (``train.epochs=1`` → train: ``epochs=1``)."""
    own: list[str] = []
    per_step: dict[str, list[str]] = {key: [] for key in STEP_KEYS}
    for item in overrides:
        head, dot, rest = item.partition(".")
        if dot and head.strip() in STEP_KEYS and "=" in rest:
            per_step[head.strip()].append(rest)
        else:
            own.append(item)
    return own, per_step


def _serve_shorthand(data: dict[str, Any], folder: Path) -> None:
    """``serve: serve.yaml`` means ``serve: {config: serve.yaml}`` (expanded first, so overrides merge)."""
    if isinstance(data.get("serve"), str):
        data["serve"] = {"config": data["serve"]}


def load_pipeline_config(
    path: Path, overrides: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """The pipeline file itself: file < ``MINIML_PIPELINE__*`` < overrides."""
    return load_config(
        PipelineConfig, path, overrides, environ=environ, base_dir_key="base_dir", adjust=_serve_shorthand
    )


def step_source(key: str, source: StepSource | None, base_dir: Path) -> tuple[Path | dict[str, Any], str]:
    """A step's config file (relative to the pipeline file) or inline mapping, and how to name it."""
    if isinstance(source, str):
        file = (base_dir / source).expanduser().resolve()
        if not file.is_file():
            raise ConfigError(
                f"{key}: config file {file} does not exist", hint="paths are relative to the pipeline file"
            )
        return file, str(file)
    return dict(source or {}), f"{key} (inline)"


def _load_step(
    key: str,
    config: PipelineConfig,
    overrides: Sequence[str],
    build: Callable[..., Any],
    environ: Mapping[str, str] | None,
) -> Any:
    """Load one step through its own loader; any config error is re-raised naming the step's key."""
    source = getattr(config, key)
    if source is None and not overrides:
        return None
    base_dir = config.base_dir or Path.cwd()
    try:
        found, where = step_source(key, source, base_dir)
        return build(found, overrides, environ=environ, base_dir=base_dir, where=where)
    except MinimlError as err:
        message = str(err)
        if not message.startswith(f"{key}:"):
            message = f"{key}: {message}"
        raise ConfigError(f"pipeline {config.name}: {message}") from None


def _build_data(source: Any, overrides: Sequence[str], **kw: Any) -> Any:
    from miniml.data.prepare import PrepareConfig

    return load_config(PrepareConfig, source, overrides, base_dir_key="base_dir", **kw)


def _build_train(source: Any, overrides: Sequence[str], **kw: Any) -> Any:
    from miniml.train.config import load_train_config

    kw.pop("base_dir")
    return load_train_config(source, overrides, **kw)


def _build_optimize(source: Any, overrides: Sequence[str], **kw: Any) -> Any:
    from miniml.optimize.config import OptimizeConfig

    return load_config(OptimizeConfig, source, overrides, **kw)


def _load_serve(config: PipelineConfig, environ: Mapping[str, str] | None) -> Any:
    if config.serve is None:
        return None
    from miniml.serve.server import load_settings

    file = ((config.base_dir or Path.cwd()) / config.serve.config).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(
            f"pipeline {config.name}: serve.config: config file {file} does not exist",
            hint="paths are relative to the pipeline file",
        )
    try:
        return load_settings(file, environ=environ)
    except MinimlError as err:
        raise ConfigError(f"pipeline {config.name}: serve: {err}") from None


def check_consistent(pipeline: Pipeline) -> None:
    """Cross-step rules: train registers a version, and trains on the dataset the data step prepares."""
    name, train = pipeline.name, pipeline.train
    if not train.register_model:
        raise ConfigError(
            f"pipeline {name}: train.register_model is false, but the gate needs a registered version",
            hint="remove register_model from the train config",
        )
    if pipeline.data is not None and train.dataset.strip("/").split("/")[0] != pipeline.data.name:
        raise ConfigError(
            f"pipeline {name}: train.dataset is {train.dataset!r} but the data step prepares "
            f"{pipeline.data.name!r}",
            hint=f"set dataset: {pipeline.data.name} in the train config",
        )


def load_pipeline(
    path: Path | str, overrides: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> Pipeline:
    """Load a pipeline file and every step config it names, each through its own schema."""
    own, per_step = split_overrides(overrides)
    config = load_pipeline_config(Path(path), own, environ)
    builders = {"data": _build_data, "train": _build_train, "optimize": _build_optimize}
    steps = {key: _load_step(key, config, per_step[key], build, environ) for key, build in builders.items()}
    pipeline = Pipeline(config, str(path), serve=_load_serve(config, environ), **steps)
    check_consistent(pipeline)
    return pipeline

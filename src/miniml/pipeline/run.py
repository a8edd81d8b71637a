"""``miniml pipeline run``: data → train → optimize → evaluate → gate → serve, one line per step.

Reads top to bottom in :func:`run_pipeline`. Each step is recorded in the pipeline's state file before and
after it runs; a re-run skips a step that finished with the same key (config + inputs), so an interrupted
pipeline continues where it stopped. The first failing step stops the pipeline with one line naming it.
A candidate that does not beat the champion is not promoted; that is an outcome, not a failure, unless
``gate.required`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

import miniml.pipeline.steps as steps
from miniml.data.dataset import Dataset
from miniml.errors import ConfigError, MinimlError
from miniml.pipeline.config import Pipeline
from miniml.pipeline.state import StateStore, StepRecord


class PipelineStepError(MinimlError):
    """A step of the pipeline failed; the message names the step and carries the step's own error."""


class GateRefusedError(MinimlError):
    """``gate.required`` is set and the candidate did not beat the champion (exit 1, like ``promote``)."""

    exit_code = 1


@dataclass
class PipelineResult:
    """What a pipeline run ended with."""

    name: str
    model: str
    dataset: str
    run_id: str | None
    trained_version: int
    candidate_version: int
    promoted: bool
    champion_version: int | None
    alias: str
    state_file: Path


class Runner:
    """Runs steps one by one: skip when done with the same key, record, print one line each."""

    def __init__(self, pipeline: Pipeline, store: StateStore, console: Console) -> None:
        self.pipeline = pipeline
        self.store = store
        self.console = console

    def print(self, mark: str, step: str, text: str) -> None:
        self.console.print(f"{mark} [bold]{step:<8}[/bold] {escape(text)}", highlight=False)

    def step(
        self,
        name: str,
        key: str | None,
        work: Callable[[], steps.StepOutcome],
        still_valid: Callable[[StepRecord], bool] = lambda record: True,
    ) -> dict[str, Any]:
        """Run ``work`` as step ``name`` (or skip it) and return its outputs."""
        record = self.store.done(name, key) if key is not None else None
        if record is not None and still_valid(record):
            self.print("[cyan]↷[/cyan]", name, f"done before, skipped: {_summary(record.outputs)}")
            return record.outputs
        self.store.start(name, key)
        start = time.perf_counter()
        try:
            outcome = work()
        except BaseException as err:
            self.store.fail(name, err)
            self.print("[red]✗[/red]", name, self.store.state.steps[name].status)
            if isinstance(err, MinimlError):
                raise PipelineStepError(f"pipeline {self.pipeline.name}: step {name} failed: {err}") from err
            raise
        self.store.finish(name, outcome.outputs)
        mark = "[green]✓[/green]" if outcome.outputs.get("promoted", True) else "[yellow]–[/yellow]"
        self.print(mark, name, f"{outcome.line} ({time.perf_counter() - start:.1f} s)")
        return outcome.outputs


def _summary(outputs: dict[str, Any]) -> str:
    for key in ("uri", "dataset"):
        if outputs.get(key):
            return str(outputs[key])
    if outputs.get("version") is not None:
        return f"{outputs.get('model', 'version')} v{outputs['version']}"
    return "no outputs recorded"


def run_pipeline(
    pipeline: Pipeline,
    *,
    resume: bool = False,
    fresh: bool = False,
    mirror: str | None = None,
    serve: bool = False,
    console: Console | None = None,
) -> PipelineResult:
    """Run every step of ``pipeline``; see the module docstring for skipping, failures and the gate."""
    if serve and pipeline.config.serve is None:
        raise ConfigError(
            f"--serve: pipeline {pipeline.name} has no serve step", hint="add serve: serve.yaml to the file"
        )
    console = console or Console(soft_wrap=True)  # one line per step, however narrow the terminal
    store = StateStore(pipeline.name, pipeline.source, fresh=fresh)
    runner = Runner(pipeline, store, console)
    console.print(f"[bold]pipeline {escape(pipeline.name)}[/bold] (state: {escape(str(store.file))})")

    dataset = _data(runner, mirror)
    trained = _train(runner, dataset, resume)
    candidate = _optimize(runner, int(trained["version"]))
    if pipeline.config.evaluate.enabled:
        uri, split = f"models:/{pipeline.train.model_name}/{candidate}", pipeline.config.evaluate.split
        runner.step(
            "evaluate",
            steps.evaluate_key(uri, dataset, split),
            lambda: steps.run_evaluate(pipeline, uri, candidate, dataset),
        )
    gate = runner.step("gate", None, lambda: steps.run_gate(pipeline, pipeline.train.model_name, candidate))

    result = PipelineResult(
        name=pipeline.name,
        model=pipeline.train.model_name,
        dataset=steps.dataset_ref(dataset),
        run_id=trained.get("run_id"),
        trained_version=int(trained["version"]),
        candidate_version=candidate,
        promoted=bool(gate["promoted"]),
        champion_version=candidate if gate["promoted"] else gate.get("previous"),
        alias=str(gate["alias"]),
        state_file=store.file,
    )
    _report(pipeline, result, console)
    serve_step = pipeline.config.serve
    if serve_step is not None and (serve or serve_step.enabled):
        serve_champion(pipeline, result, console)
    return result


def _data(runner: Runner, mirror: str | None) -> Dataset:
    """Prepare the dataset (when the pipeline has a data step) and open the one the train step uses."""
    pipeline = runner.pipeline
    prepared = None
    if pipeline.data is not None:
        prepared = runner.step("data", None, lambda: steps.run_data(pipeline, mirror))["dataset"]
    try:
        return steps.open_train_dataset(pipeline, prepared)
    except MinimlError as err:
        raise PipelineStepError(f"pipeline {pipeline.name}: step train failed: {err}") from err


def _train(runner: Runner, dataset: Dataset, resume: bool) -> dict[str, Any]:
    """The train step, pinned to ``dataset``; skipped when done with the same key and version kept."""
    pipeline, model = runner.pipeline, runner.pipeline.train.model_name
    config = steps.train_config(pipeline, dataset)
    key = steps.train_key(config, dataset)
    resume_train = _resume_train(runner.store, key, resume, runner)  # before the step marks itself running
    return runner.step(
        "train",
        key,
        lambda: steps.run_train(config, resume=resume_train),
        lambda record: steps.version_exists(model, record.outputs.get("version")),
    )


def _optimize(runner: Runner, trained: int) -> int:
    """The optimize step (if any); returns the candidate version: the optimized one, else ``trained``."""
    pipeline, model = runner.pipeline, runner.pipeline.train.model_name
    if pipeline.optimize is None:
        return trained
    parent = f"models:/{model}/{trained}"
    optimized = runner.step(
        "optimize",
        steps.optimize_key(pipeline, parent),
        lambda: steps.run_optimize(pipeline, parent),
        lambda record: steps.version_exists(model, record.outputs.get("version")),
    )
    return int(optimized["version"]) if optimized.get("version") is not None else trained


def _report(pipeline: Pipeline, result: PipelineResult, console: Console) -> None:
    """The closing line; a refused gate is an error only with ``gate.required``."""
    if not result.promoted and pipeline.config.gate.required:
        raise GateRefusedError(
            f"pipeline {pipeline.name}: gate.required is set and v{result.candidate_version} was not "
            f"promoted (kept {result.alias} v{result.champion_version})",
            hint="see the gate line above for both figures; set gate.force to promote anyway",
        )
    kept = "" if result.promoted else f" (v{result.candidate_version} not promoted)"
    holder = f"models:/{result.model}@{result.alias} is v{result.champion_version}"
    console.print(escape(f"pipeline {result.name}: {holder}{kept}"), highlight=False)


def _resume_train(store: StateStore, key: str, resume: bool, runner: Runner) -> bool:
    """Resume the train step only when ``--resume`` is given and its last attempt with this key stopped."""
    record = store.get("train")
    interrupted = record is not None and record.key == key and record.status != "done"
    if interrupted and not resume:
        runner.print(
            "[yellow]![/yellow]",
            "train",
            "the last attempt with this config stopped early; starting over (--resume continues it)",
        )
    return interrupted and resume


def serve_champion(pipeline: Pipeline, result: PipelineResult, console: Console) -> None:
    """Serve as the pipeline's serve config says (locally, or on Ray with ``backend.type: ray``), in the
    foreground (Ctrl-C stops it)."""
    from miniml.serve.server import run

    assert pipeline.config.serve is not None and pipeline.serve is not None
    settings = pipeline.serve
    if not settings.models:  # the serve file names none: serve what the gate just decided
        settings = settings.model_copy(update={"models": [f"models:/{result.model}@{result.alias}"]})
    where = f"http://{settings.server.host}:{settings.server.port}"
    if settings.backend.type == "ray":  # the serve file's backend: Ray Serve replicas (prints where itself)
        from miniml.backends.ray.serving import run_on_ray

        run_on_ray(settings, demo_key=pipeline.config.serve.demo_key)
        return
    console.print(
        f"serving {escape(', '.join(settings.models))} at {where} (Ctrl-C to stop; docs: {where}/docs)"
    )
    run(settings, demo_key=pipeline.config.serve.demo_key)

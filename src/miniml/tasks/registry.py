"""The task table, and loading any model for inference: a URI → its task → its runtime → ``LoadedModel``.

The built-in tasks are listed here, statically; :func:`register_task` adds another (one module implementing
:class:`~miniml.tasks.base.Task`, registered by an explicit call, e.g. in a plugin or a test).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from miniml.errors import ConfigError, ModelError
from miniml.modelcard import register_card_text
from miniml.modelfolder import read_info
from miniml.registry.uris import ModelSource
from miniml.runtime.generation import Generator
from miniml.runtime.loaded import LoadedModel
from miniml.runtime.resolve import resolve, version_key
from miniml.tasks.base import ModelImporter, Task, TrainConfig
from miniml.tasks.causal_lm import CausalLMTask
from miniml.tasks.classification import ClassificationTask
from miniml.tasks.embedding import EmbeddingTask
from miniml.tasks.generative import GenerativeTask
from miniml.tasks.seq2seq import Seq2SeqTask

DEFAULT_TASK = "classification"
_TASKS: dict[str, Task] = {
    task.name: task for task in (ClassificationTask(), Seq2SeqTask(), CausalLMTask(), EmbeddingTask())
}
for _task in _TASKS.values():
    register_card_text(_task.name, _task.card)


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` known by its name (a built-in name needs ``replace``); returns it."""
    if task.name in _TASKS and _TASKS[task.name] is not task and not replace:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    register_card_text(task.name, task.card)
    return task


def unregister_task(name: str) -> None:
    """Forget a task added with :func:`register_task` (tests)."""
    _TASKS.pop(name, None)


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; a ModelError naming the known ones otherwise."""
    task = _TASKS.get(name)
    if task is None:
        raise ModelError(f"unknown task {name!r}", hint=f"known: {', '.join(_TASKS)}")
    return task


def importer(name: str) -> ModelImporter:
    """The task ``name`` as a :class:`ModelImporter`; a ModelError naming the tasks that are, otherwise."""
    task = get_task(name)
    if not callable(getattr(task, "import_model", None)):
        able = [n for n, t in _TASKS.items() if callable(getattr(t, "import_model", None))]
        raise ModelError(
            f"{name} models are made by training, not imported",
            hint=f"miniml models import makes {', '.join(able) or 'no'} models; train this one",
        )
    found: ModelImporter = task  # type: ignore[assignment]
    return found


def train_config_schema(data: Mapping[str, Any]) -> type[TrainConfig]:
    """The train config schema a (merged) config mapping asks for with its ``task`` key."""
    name = str(data.get("task", DEFAULT_TASK))
    task = _TASKS.get(name)
    if task is None:
        raise ConfigError(
            f"invalid config: task: unknown task {name!r}", hint=f"use one of {', '.join(_TASKS)}"
        )
    return task.config


def load_model(
    uri: str | Path | ModelSource,
    *,
    device: str | None = None,
    threads: int | None = None,
    alias: str | None = None,
    replicas: int = 0,
) -> LoadedModel:
    """Resolve ``uri`` (or take a resolved source), load it on its task's runtime; ``replicas`` more copies.

    ``threads`` sets torch's intra-op threads of this process (each replica runs with as many).
    """
    source = uri if isinstance(uri, ModelSource) else resolve(uri)
    info = read_info(source.path)
    task = get_task(info.task)
    predictor = task.load(source.path, info, device=device, threads=threads)
    extra = tuple(task.load(source.path, info, device=device, threads=threads) for _ in range(replicas))
    return LoadedModel(
        name=source.name,
        uri=source.uri,
        version=source.version,
        alias=alias or source.alias,
        path=source.path,
        info=info,
        predictor=predictor,
        key=version_key(source),
        replicas=extra,
    )


def load_predictor(
    uri: str | Path | ModelSource, *, threads: int | None = None, device: str | None = None
) -> Any:
    """The runtime object of a model (``load_model(...).predictor``): a classifier's ``Predictor``
    (``predict_proba(texts)``: float32 probabilities, columns in ``info.labels`` order), a ``Generator``."""
    return load_model(uri, threads=threads, device=device).predictor


def load_generator(uri: str | Path | ModelSource, *, device: str | None = None) -> Generator:
    """A generative model's :class:`~miniml.runtime.generation.Generator`; a clear error for other models."""
    source = uri if isinstance(uri, ModelSource) else resolve(uri)
    info = read_info(source.path)
    if not isinstance(get_task(info.task), GenerativeTask):
        raise ModelError(
            f"model {info.name!r} is a {info.task} model and cannot generate text",
            hint="use /predict for it, or a seq2seq / causal_lm model for generation",
        )
    generator: Generator = load_model(source, device=device).predictor
    return generator

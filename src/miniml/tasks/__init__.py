"""Tasks: one object per task owns everything task-specific (see :mod:`miniml.tasks.base`).

- ``base``: the ``Task`` protocol and the shared ``TrainConfig`` keys;
- ``classification``, ``seq2seq``, ``causal_lm``: the built-in tasks (``generative``: what the last two
  share; ``*_serving``, ``serving``: their serving hooks; ``generative_scoring``: their test metrics;
  ``*_card``: what their model cards say);
- ``registry``: the task table, ``get_task``, ``register_task`` and ``load_model`` (any model URI →
  ``LoadedModel`` on its task's runtime).
"""

from miniml.tasks.base import Task, TrainConfig
from miniml.tasks.registry import (
    get_task,
    load_generator,
    load_model,
    load_predictor,
    register_task,
    task_names,
    train_config_schema,
)

__all__ = [
    "Task",
    "TrainConfig",
    "get_task",
    "load_generator",
    "load_model",
    "load_predictor",
    "register_task",
    "task_names",
    "train_config_schema",
]

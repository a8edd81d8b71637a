"""Tasks: how examples become tensors and outputs become answers (``classification`` now)."""

from miniml.tasks.base import Task, get_task, register_task
from miniml.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "Task", "get_task", "register_task"]

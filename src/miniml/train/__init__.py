"""Training: one session and one Trainer-based engine for every task, resumable checkpoints, tracked runs.

- ``run``: ``train`` (tracked + registered) and ``fit`` (the model folder only);
- ``session``: one training job, asking the task (``miniml.tasks``) for its recipe;
- ``engine``: ``make_trainer`` (the ``transformers`` Trainer); ``callbacks``, ``checkpoints``;
- ``config``: ``load_train_config`` (the schema is the task's; the shared keys are ``TrainConfig``).
"""

from miniml.tasks.base import TrainConfig
from miniml.train.config import load_train_config, train_config
from miniml.train.run import TrainResult, fit, train

__all__ = ["TrainConfig", "TrainResult", "fit", "load_train_config", "train", "train_config"]

"""Training: config, the shared Trainer-based engine, resumable checkpoints, tracked runs."""

from miniml.train.config import TrainConfig
from miniml.train.run import TrainResult, fit, train

__all__ = ["TrainConfig", "TrainResult", "fit", "train"]

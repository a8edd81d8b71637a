"""miniml: from raw text data to a fast, secure, monitored model API.

The library is usable without the CLI: every command is a plain function taking one validated config.
"""

from __future__ import annotations

__version__ = "0.1.0"

from miniml.config import StepConfig, load_config
from miniml.data.dataset import Dataset, Manifest, open_dataset, write_dataset
from miniml.errors import ConfigError, DataError, MinimlError, ModelError, RegistryError
from miniml.modelfolder import ModelInfo, read_info

__all__ = [
    "ConfigError",
    "DataError",
    "Dataset",
    "Manifest",
    "MinimlError",
    "ModelError",
    "ModelInfo",
    "RegistryError",
    "StepConfig",
    "__version__",
    "load_config",
    "open_dataset",
    "read_info",
    "write_dataset",
]

"""miniml: from raw text data to a fast, secure, monitored model API.

The library is usable without the CLI: every command is a plain function taking one validated config.
"""

from __future__ import annotations

import typing as _typing
from typing import Any as _Any

from miniml.config import StepConfig, load_config
from miniml.errors import ConfigError, DataError, MinimlError, ModelError, RegistryError
from miniml.modelfolder import ModelInfo, read_info
from miniml.version import __version__

if _typing.TYPE_CHECKING:
    from miniml.data.dataset import Dataset, Manifest, open_dataset, write_dataset

# Heavy members (pandas, pyarrow) load on first use, so `miniml --help` stays fast.
_LAZY = ("Dataset", "Manifest", "open_dataset", "write_dataset")


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        from miniml.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'miniml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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

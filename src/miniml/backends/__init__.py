"""Compute backends: where train and predict run (``base``: the protocol; ``local``: in-process).

The table is static; ``get_backend(name)`` is what the command line and the pipeline call.
"""

from __future__ import annotations

from miniml.backends.base import Backend
from miniml.backends.local import LocalBackend
from miniml.errors import ConfigError

BACKENDS: dict[str, type[Backend]] = {"local": LocalBackend}


def get_backend(name: str = "local") -> Backend:
    """The backend called ``name``; a ConfigError naming the known ones otherwise."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}", hint=f"use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]()


__all__ = ["BACKENDS", "Backend", "LocalBackend", "get_backend"]

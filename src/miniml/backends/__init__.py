"""Compute backends: where data preparation, training and batch prediction run.

``base``: the protocol; ``local``: in-process (the default, imports no Ray); ``ray``: a Ray cluster
(:mod:`miniml.backends.ray`, loaded only when asked for, so ``miniml`` starts fast without Ray installed).
``get_backend(section)`` is what the command line and the pipeline call.
"""

from __future__ import annotations

from miniml.backends.base import Backend
from miniml.backends.local import LocalBackend
from miniml.compute import BackendConfig
from miniml.errors import ConfigError

NAMES = ("local", "ray")


def get_backend(section: BackendConfig | str | None = None) -> Backend:
    """The backend a ``backend:`` section (or a bare name) asks for; a ConfigError naming the known ones."""
    if section is None or isinstance(section, str):
        name = section or "local"
        if name not in NAMES:
            raise ConfigError(f"unknown backend {name!r}", hint=f"use one of {', '.join(NAMES)}")
        section = BackendConfig.model_validate({"type": name})
    if section.is_local:
        return LocalBackend()
    from miniml.backends.ray import RayBackend  # Ray loads only here: `local` never imports it

    return RayBackend(section)


__all__ = ["NAMES", "Backend", "BackendConfig", "LocalBackend", "get_backend"]

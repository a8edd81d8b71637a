"""miniml.serve: the model server (``miniml serve``).

``create_app(settings)`` builds the FastAPI app; ``load_settings`` reads settings with the documented
precedence; ``run(settings)`` serves until SIGTERM. Names are imported lazily so that importing one
submodule (``miniml.serve.settings``) does not pull in the web stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miniml.serve.app import create_app
    from miniml.serve.server import load_settings, run
    from miniml.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "load_settings", "run"]
_WHERE = {
    "ServeSettings": "miniml.serve.settings",
    "create_app": "miniml.serve.app",
    "load_settings": "miniml.serve.server",
    "run": "miniml.serve.server",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'miniml.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)

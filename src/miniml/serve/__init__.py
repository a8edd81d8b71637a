"""miniml.serve: the model server (``miniml serve``).

``create_app(settings)`` builds the FastAPI app; ``load_settings`` reads settings with the documented
precedence; ``run(settings)`` serves until SIGTERM. Names are imported lazily so that importing one
submodule (``miniml.serve.settings``) does not pull in the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miniml.serve.app import create_app
    from miniml.serve.server import load_settings, run
    from miniml.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "load_settings", "run"]


def __getattr__(name: str) -> Any:
    if name == "ServeSettings":
        from miniml.serve import settings

        return settings.ServeSettings
    if name == "create_app":
        from miniml.serve import app

        return app.create_app
    if name in ("load_settings", "run"):
        from miniml.serve import server

        return getattr(server, name)
    raise AttributeError(f"module 'miniml.serve' has no attribute {name!r}")

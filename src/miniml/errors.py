"""The one error type users see: a short message that says what was wrong and how to fix it.

Library code raises ``MinimlError`` (or a subclass) for every problem caused by input, configuration or the
environment. The CLI prints ``error: <message>`` on one line and exits non-zero; the server maps it to a 4xx
JSON answer. Anything else that escapes is a bug in miniml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MinimlError(Exception):
    """A user-facing failure; ``str(err)`` is one line that names the problem and the fix."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        text = " ".join(message.split())
        if hint:
            text = f"{text} ({' '.join(hint.split())})"
        super().__init__(text)


class ConfigError(MinimlError):
    """A configuration file, environment variable or ``--set`` override is invalid."""


class DataError(MinimlError):
    """A data source is missing, unreadable, corrupted or empty after cleaning."""


class ModelError(MinimlError):
    """A model id, path, URI, checkpoint or alias cannot be used."""


class RegistryError(MinimlError):
    """The model registry refused an operation (unknown name, version, alias; promotion gate)."""


class RequestError(MinimlError):
    """A request the server refuses: an HTTP ``status``, a stable machine-readable ``code``, details.

    Task serving hooks raise it (they know nothing of HTTP); the server answers it as a 4xx/5xx JSON body.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = str(self)
        self.headers = dict(headers or {})
        self.details = details

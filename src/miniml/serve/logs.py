"""Structured logs: one JSON object per line on stderr, for the server's own and uvicorn's messages.

Access lines (logger ``miniml.access``) carry request id, route, status, latency, model version and the
key's *name*; never the key, and the input texts only when ``logging.log_inputs`` is on.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from miniml.serve.settings import LogSettings

ACCESS_LOGGER = "miniml.access"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields}``; extra fields come in ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure_logging(settings: LogSettings, stream: IO[str] | None = None) -> None:
    """Send miniml's and uvicorn's logs to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    level = settings.level.upper()
    for name in ("miniml", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if settings.access_log else logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True  # ours replaces it

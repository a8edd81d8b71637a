"""Structured logs: one JSON object per line on stderr, for the server's own and uvicorn's messages.

Access lines carry request id, route, status, latency, model version and the key's *name*; never the key,
and the input texts only when ``logging.log_inputs`` is on. They bypass ``logging`` (LogRecord, caller lookup
and a flush per line cost a quarter of a fast request): :class:`AccessLog` encodes each line with orjson and
writes the lines gathered every ``flush_s`` in one call, in the same format as every other line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from miniml.serve.settings import LogSettings

ACCESS_LOGGER = "miniml.access"


class ThrottledWarning:
    """A warning logged at most once per ``every_s``: a shared store that is down (Redis) fails every
    request's call to it, and one line per request would flood the log. ``warn(err)`` formats ``message``
    with the error."""

    def __init__(self, logger: logging.Logger, message: str, every_s: float = 10.0) -> None:
        self._logger = logger
        self._message = message
        self._every_s = every_s
        self._last = -math.inf

    def warn(self, err: BaseException) -> bool:
        """Log ``err`` unless a line went out less than ``every_s`` ago; whether it was logged."""
        now = time.monotonic()
        if now - self._last < self._every_s:
            return False
        self._last = now
        self._logger.warning(self._message, err)
        return True


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
    logging.getLogger("uvicorn.access").disabled = True  # AccessLog replaces it


class AccessLog:
    """Buffered JSON access lines: ``record`` is a dict update and an orjson call; ``flush`` writes them."""

    def __init__(self, enabled: bool, stream: IO[str] | None = None, flush_s: float = 0.2) -> None:
        self.enabled = enabled
        self._stream = stream
        self._lines: list[bytes] = []
        self._flush_s = flush_s
        self._task: asyncio.Task[None] | None = None

    def record(self, fields: dict[str, Any]) -> None:
        """Queue one access line (written within ``flush_s``)."""
        now = time.time()
        line = {"ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"), "level": "info"}
        line["logger"] = ACCESS_LOGGER
        line["msg"] = "request"
        line.update(fields)
        self._lines.append(orjson.dumps(line, default=str))

    def flush(self) -> None:
        """Write every queued line in one call."""
        if self._lines:
            lines, self._lines = self._lines, []
            stream = self._stream or sys.stderr
            stream.write(b"\n".join(lines).decode() + "\n")
            stream.flush()

    def start(self) -> None:
        """Flush periodically on the running loop."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._flush_forever(), name="access-log")

    async def stop(self) -> None:
        """Stop the flusher and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            self.flush()

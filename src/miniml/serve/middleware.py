"""The one middleware: request id, latency, metrics, access log, and the catch-all for real bugs.

A plain ASGI middleware (not ``BaseHTTPMiddleware``, which costs a task and a stream per request). It puts
a :class:`~miniml.serve.requestinfo.RequestInfo` under ``scope["miniml"]``; routing, access control and
the inference path fill it in (route, model, key name, version, inputs) for the access line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from miniml.serve.errors import problem_body
from miniml.serve.logs import AccessLog
from miniml.serve.metrics import ServeMetrics
from miniml.serve.requestinfo import SCOPE_KEY, RequestInfo

log = logging.getLogger("miniml.serve")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def drain_start(length: int) -> Message:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    return {"type": "http.response.start", "status": 503, "headers": headers}


def drain_body(request_id: str) -> bytes:
    message = "the server is shutting down and could not finish this request; retry on another replica"
    return problem_body("unavailable", message, request_id, retry_after=1)


class ObservabilityMiddleware:
    """Wraps every HTTP request: ``X-Request-ID``, metrics, JSON access line, JSON 500 for bugs."""

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics, access_log: AccessLog) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def request_id(self, scope: Scope) -> str:
        """The client's ``X-Request-ID`` when it is sane, else a new one (cheap: prefix + counter)."""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if REQUEST_ID.fullmatch(text):
                    return text
                break
        return f"{self._prefix}-{next(self._counter):x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = self.request_id(scope)
        info = RequestInfo(rid)
        scope[SCOPE_KEY] = info
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running when a drain outlasts server.graceful_timeout_s:
            # answer like any other shutdown refusal (JSON 503 + Retry-After), not uvicorn's plain 500.
            if status != 0:  # an answer already under way (a stream): uvicorn closes the connection
                raise
            body = drain_body(rid)
            await send_with_id(drain_start(len(body)))
            await send_with_id({"type": "http.response.body", "body": body})
        except Exception:
            log.exception("internal error", extra={"fields": {"request_id": rid, "path": scope["path"]}})
            if status == 0:
                body = problem_body("internal_error", "internal server error; it has been logged", rid)
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
            status = status or 500
        finally:
            self._finish(scope, info, status, time.perf_counter() - start)

    def _finish(self, scope: Scope, info: RequestInfo, status: int, seconds: float) -> None:
        path = str(info.route or getattr(scope.get("route"), "path", "unmatched"))
        model = info.model or ""
        self.metrics.observe_request(path, scope["method"], status, model, seconds)
        if self.access_log.enabled:
            fields = {
                "request_id": info.request_id,
                "method": scope["method"],
                "path": scope["path"],
                "route": path,
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                **info.fields(),
            }
            client = scope.get("client")
            if client:
                fields["client"] = client[0]
            self.access_log.record(fields)

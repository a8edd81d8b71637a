"""The HTTP connection layer: the limits uvicorn's httptools protocol does not enforce, enforced here.

uvicorn 0.54 with httptools (the fast parser the predict path is tuned for) bounds neither the size of a
request's headers nor the time to receive them or the body: its keep-alive timer only runs *between*
requests and is reset by every byte, a fresh connection that sends nothing is kept forever, and httptools
buffers a header value until it is complete (a 50 MB header was accepted; four unfinished 100 MB headers
doubled the server's memory). Its ``limit_concurrency`` answers plain-text 503s and also counts in-flight
tasks. h11's ``h11_max_incomplete_event_size`` bounds headers, but h11 costs far more CPU per request, and
neither parser bounds time. So :class:`LimitedHttpToolsProtocol` subclasses uvicorn's httptools protocol
(pinned uvicorn version; ``tests/e2e/test_serve_connections.py`` pins the behaviour over real sockets) and
adds, per connection:

- ``server.max_header_bytes`` / ``server.max_headers``: request line + headers larger, or more header
  fields, are answered ``431`` (JSON) and the connection is closed. Raw bytes are counted as they arrive,
  so a header that never ends costs at most one read (256 KiB) beyond the limit;
- ``server.header_timeout_s``: from a connection's first moment (or a request's first byte) to the end
  of its headers; an idle fresh connection is closed, a partial request answered ``408``;
- ``server.body_timeout_s``: from the end of the headers to the end of the body (``408``);
- ``server.limit_concurrency``: open connections beyond it are answered ``503`` + ``Retry-After``
  (JSON, ``Connection: close``) without reaching the app, so overload is shed in microseconds instead of
  queueing: a new client's wait stays bounded;
- malformed requests get uvicorn's 400 as JSON.

Timers are armed only when a request is still incomplete at the end of a read, so the usual request that
arrives in one read costs no timer at all (the fast path stays fast: ``bench/serve_langid.py``).
A reverse proxy is not needed for these limits; ``deploy/`` ships none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from miniml.serve.errors import problem_body


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may do (``server.*`` settings)."""

    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    limit_concurrency: int | None = None
    overloaded_header_timeout_s: float = 1.0  # a connection that will only get a 503 gets less time


@dataclass
class ConnectionStats:
    """Counters the metrics read at scrape time: open connections and refusals by reason."""

    open: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    on_refuse: Callable[[str], None] | None = None

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self.on_refuse is not None:
            self.on_refuse(reason)


LINGER_S = 1.0  # how long a refused connection's late bytes are read and dropped before closing


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is already recorded."""


def raw_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A complete JSON error response that closes the connection (written straight to the transport)."""
    reasons = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
    reasons[503] = "Service Unavailable"
    body = problem_body(code, message)
    lines = [
        f"HTTP/1.1 {status} {reasons.get(status, '')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def over_capacity(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app of a connection beyond ``limit_concurrency``: 503 + Retry-After, connection closed."""
    body = problem_body("over_capacity", "the server has too many open connections; retry shortly")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, time and connection limits (see the module docstring)."""

    limits: ConnectionLimits = ConnectionLimits()
    stats: ConnectionStats = ConnectionStats()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.stats.open += 1
        self._in_headers = True  # reading a request line + headers (or waiting for them)
        self._in_body = False
        self._raw = 0  # bytes read while in headers: bounds a header that never ends
        self._header_bytes = 0  # exact size of this request's line + headers
        self._header_count = 0
        self._refusal: bytes | None = None
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None
        timeout = self.limits.header_timeout_s
        cap = self.limits.limit_concurrency
        if cap is not None and len(self.connections) > cap:
            self.app = over_capacity  # this connection's requests never reach the app
            self.stats.refuse("over_capacity")
            timeout = min(timeout, self.limits.overloaded_header_timeout_s)
        self._arm(timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # answered and half-closed: what the client still sends is dropped unread
            return
        if self._in_headers:
            self._raw += len(data)
        super().data_received(data)
        if self._lingering or self.transport.is_closing():
            return
        if self._in_headers:
            if self._raw > self.limits.max_header_bytes:
                self._reject(431, "headers_too_large", self._too_large_message())
            elif self._timer is None and self._raw:
                self._arm(self.limits.header_timeout_s, "headers")
        elif self._in_body:
            if self._timer is None:
                self._arm(self.limits.body_timeout_s, "body")
        else:
            self._disarm()

    # ---------------------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._in_body = True, False
        self._header_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(
                431, "too_many_headers", f"more than {self.limits.max_headers} header fields in one request"
            )
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers, self._in_body = False, True
        self._raw = 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parse error: our refusal when a callback raised one, else a JSON 400."""
        self._answer_and_close(self._refusal or raw_response(400, "bad_request", "malformed HTTP request"))

    # ---------------------------------------------------------------- helpers
    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, "headers_too_large", self._too_large_message())

    def _too_large_message(self) -> str:
        return f"request line and headers exceed the limit of {self.limits.max_header_bytes} bytes"

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.stats.refuse(code)
        self._refusal = raw_response(status, code, message)
        raise _Refused(message)  # httptools stops parsing; uvicorn calls send_400_response

    def _reject(self, status: int, code: str, message: str) -> None:
        self.stats.refuse(code)
        self._answer_and_close(raw_response(status, code, message))

    def _answer_and_close(self, response: bytes) -> None:
        """Write ``response``, half-close, then drop whatever the client still sends for up to a second.

        Closing at once while the client is still sending makes the kernel answer with a reset, which can
        destroy the response before the client reads it (nginx's "lingering close" does the same).
        """
        self._disarm()
        self.transport.write(response)
        if self.transport.can_write_eof():
            self._lingering = True
            self.transport.write_eof()
            self._timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: str) -> None:
        self._timer = None
        if self.transport.is_closing() or self._lingering:
            return
        if phase == "headers" and not self._raw and self._header_bytes == 0:
            self.stats.refuse("idle_timeout")  # nothing sent: just close
            self.transport.close()
            return
        limit = self.limits.header_timeout_s if phase == "headers" else self.limits.body_timeout_s
        message = f"the request {phase} did not arrive within {limit:g}s"
        if self.cycle is not None and self.cycle.response_started:
            self.stats.refuse(f"{phase}_timeout")
            self.transport.close()  # the app already answered (e.g. 413): just stop waiting
            return
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's reads end; its late answer is dropped
            self.cycle.message_event.set()
        self._reject(408, f"{phase}_timeout", message)


def protocol_class(limits: ConnectionLimits, stats: ConnectionStats) -> type[LimitedHttpToolsProtocol]:
    """A protocol class bound to ``limits`` and ``stats`` (uvicorn instantiates it per connection)."""
    return type("MinimlHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits, "stats": stats})

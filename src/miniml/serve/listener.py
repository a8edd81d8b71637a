"""The listening socket: opened by miniml (a taken port is a clear error), and its accept queue, measured.

Connections the kernel has completed but the server has not accepted yet wait in the listen socket's
accept queue, invisible to every latency the server records itself (a request's clock starts when it is
read). Under overload that wait was seconds while the server's own histogram said milliseconds, so
:func:`accept_queue` reads the queue's depth (and its limit, the effective ``backlog``) for
``miniml_listen_queue_depth`` / ``miniml_listen_queue_limit``: on Linux one ``getsockopt(TCP_INFO)`` on
the listening socket, whose ``tcpi_unacked`` / ``tcpi_sacked`` fields hold the queue length and limit for
a socket in LISTEN state (what ``ss -lnt`` shows as Recv-Q / Send-Q). Elsewhere it returns None and the
metrics are left out.
"""

from __future__ import annotations

import errno
import socket
import struct

from miniml.errors import ConfigError

_TCP_INFO = getattr(socket, "TCP_INFO", None)
_LISTEN = 10  # TCP_LISTEN in tcpi_state
_HEAD = struct.Struct("8B6I")  # state ... options, then rto, ato, snd_mss, rcv_mss, unacked, sacked


def bind(host: str, port: int) -> socket.socket:
    """Open the listening socket ourselves, so a taken port is a clear error, not a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        reason = (
            "is already in use" if err.errno == errno.EADDRINUSE else f"cannot be opened ({err.strerror})"
        )
        raise ConfigError(f"port {port} on {host} {reason}", hint="pass --port with a free port") from None
    return sock  # not listening yet: asyncio listens once the models are loaded


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, queue limit) of a listening TCP socket; None where unknown."""
    if _TCP_INFO is None or sock.fileno() < 0:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _HEAD.size)
    except OSError:
        return None
    if len(raw) < _HEAD.size:
        return None
    fields = _HEAD.unpack(raw)
    if fields[0] != _LISTEN:
        return None
    return int(fields[12]), int(fields[13])

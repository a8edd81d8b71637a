"""``miniml serve``: settings (file < env < flags), models loaded before the port opens, one uvicorn worker.

One worker process on purpose: dynamic batching needs every request in the process that owns the model,
and the model's worker thread gets the cores (``batching.threads``); scale out with more replicas behind a
load balancer, sharing Redis for cache and rate limits. SIGTERM drains: uvicorn stops accepting, waits for
in-flight requests (``server.graceful_timeout_s``), the lifespan drains the batchers, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import disable_created_metrics

from miniml.config import load_config
from miniml.serve.app import create_app
from miniml.serve.auth import generate_key, hash_key
from miniml.serve.engine import load_models
from miniml.serve.listener import bind
from miniml.serve.logs import configure_logging
from miniml.serve.protocol import ConnectionLimits, protocol_class
from miniml.serve.rollout import load_challengers
from miniml.serve.semantic import load_embedder
from miniml.serve.settings import ApiKeyRecord, ServeSettings
from miniml.serve.state import ServerState

log = logging.getLogger("miniml.serve")


def load_settings(
    path: Path | None = None,
    *,
    models: Sequence[str] = (),
    host: str | None = None,
    port: int | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    backend: str | None = None,
) -> ServeSettings:
    """Settings with the documented precedence: file < ``MINIML_SERVE__*`` < ``--set`` < flags.

    A relative ``auth.keys_file`` in the file is relative to the file's folder.
    """
    flags: dict[str, Any] = {"server": {}}
    if models:
        flags["models"] = list(models)
    if host is not None:
        flags["server"]["host"] = host
    if port is not None:
        flags["server"]["port"] = port
    if backend is not None:
        flags["backend"] = {"type": backend}
    where = str(path) if path is not None else "serve settings"
    return load_config(
        ServeSettings, path, overrides, environ=environ, flags=flags, adjust=_keys_file_beside, where=where
    )


def _keys_file_beside(data: dict[str, Any], folder: Path) -> None:
    """A relative ``auth.keys_file`` in the config file is relative to the file's folder."""
    auth = data.get("auth")
    keys_file = auth.get("keys_file") if isinstance(auth, dict) else None
    if keys_file and not Path(keys_file).is_absolute():
        data["auth"]["keys_file"] = str(folder / keys_file)


def with_demo_key(settings: ServeSettings) -> tuple[ServeSettings, str]:
    """Add a fresh key named ``demo`` (kept in memory only: its hash lives as long as the process)."""
    key = generate_key()
    record = ApiKeyRecord(name="demo", sha256=hash_key(key))
    others = [r for r in settings.auth.keys if r.name != "demo"]
    auth = settings.auth.model_copy(update={"keys": [*others, record]})
    return settings.model_copy(update={"auth": auth}), key


def curl_line(settings: ServeSettings, model: str, key: str | None, text: str) -> str:
    """A working curl command for the predict route."""
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{host}:{settings.server.port}/v1/models/{model}/predict"
    body = '{"inputs": [' + _json_str(text) + '], "top_k": 2}'
    auth = f" -H {shlex.quote('Authorization: Bearer ' + key)}" if key else ""
    return f"curl -s {url}{auth} -H 'Content-Type: application/json' -d {shlex.quote(body)}"


def _json_str(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


class DrainingServer(uvicorn.Server):
    """uvicorn's server that marks the app as draining (``/readyz`` → 503) as soon as a signal arrives."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.miniml_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.miniml_state.status = "draining"
        super().handle_exit(sig, frame)


def _after_drain(sig: int, frame: FrameType | None) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; by then everything has drained: exit 0."""


def connection_limits(settings: ServeSettings) -> ConnectionLimits:
    """The per-connection limits of ``server.*`` (enforced by :mod:`miniml.serve.protocol`)."""
    s = settings.server
    return ConnectionLimits(
        max_header_bytes=s.max_header_bytes,
        max_headers=s.max_headers,
        header_timeout_s=s.header_timeout_s,
        body_timeout_s=s.body_timeout_s,
        limit_concurrency=s.limit_concurrency,
    )


def event_loop(settings: ServeSettings) -> str:
    """``server.loop``; ``auto`` is uvloop (when installed), chosen by ``bench/serve_overload.py``."""
    chosen = settings.server.loop
    if chosen == "auto":
        chosen = "uvloop" if _has("uvloop") else "asyncio"
    return chosen


def uvicorn_config(app: Any, settings: ServeSettings) -> uvicorn.Config:
    """One worker, our limited httptools protocol, the measured event loop, our JSON logs."""
    state = app.state.miniml
    return uvicorn.Config(
        app,
        loop=event_loop(settings),
        http=protocol_class(connection_limits(settings), state.connections),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_keep_alive=int(settings.server.keep_alive_s),
        timeout_graceful_shutdown=int(settings.server.graceful_timeout_s),
        backlog=settings.server.backlog,
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run(settings: ServeSettings, *, demo_key: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; returns after a graceful drain."""
    configure_logging(settings.logging)
    disable_created_metrics()  # *_created series double the series count and no dashboard reads them
    key = None
    if demo_key:
        settings, key = with_demo_key(settings)
    sock = bind(settings.server.host, settings.server.port)
    with contextlib.closing(sock):
        preloaded = load_models(settings)
        semantic = settings.cache.semantic
        embedder = load_embedder(semantic, settings.device) if semantic is not None else None
        app = create_app(
            settings, preloaded=preloaded, challengers=load_challengers(settings), embedder=embedder
        )
        app.state.miniml.metrics.watch_listener(sock)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic GC's scans,
        # which would otherwise pause request handling for milliseconds as the heap grows.
        gc.collect()
        gc.freeze()
        server = DrainingServer(uvicorn_config(app, settings), app.state.miniml)
        names = [m.name for m, _ in preloaded]
        log.info(
            "serving",
            extra={
                "fields": {
                    "url": f"http://{settings.server.host}:{settings.server.port}",
                    "models": {m.name: m.version for m, _ in preloaded},
                }
            },
        )
        if key is not None:
            print(f"demo API key (shown once): {key}", flush=True)
            print(curl_line(settings, names[0], key, "Hej, hvordan har du det i dag?"), flush=True)
        signal.signal(signal.SIGTERM, _after_drain)
        signal.signal(
            signal.SIGHUP, lambda *_: app.state.miniml.access.reload_keys_soon()
        )  # re-read keys now
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)

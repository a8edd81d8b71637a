"""Server CPU per request, without the network: the full ``create_app`` stack vs a bare FastAPI endpoint.

Requests go straight into the ASGI app (64 concurrent, 40 rounds, best of 5), so the figure is the CPU
the server spends per request — auth, limits, cache lookup, batching hand-off, encoding, metrics, access
log — plus the model's share (cache off). CPU time is steadier than requests/s on a busy machine.

    python bench/serve_overhead.py --model models:/nordic-langid@champion
    python bench/serve_overhead.py --model ... --set monitor.drift.enabled=false \\
        --set monitor.feedback.enabled=false      # model monitoring off
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from serve_load import machine

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def call(app: Any, path: str, body: bytes) -> int:
    """One POST through the ASGI app; returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def cpu_per_request(app: Any, path: str, texts: list[str], lifespan: bool) -> float:
    """Best-of-5 process CPU µs per request at 64 concurrent requests."""
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = None
    if lifespan:
        await startup.put({"type": "lifespan.startup"})
        task = asyncio.create_task(app({"type": "lifespan", "state": {}}, startup.get, events.put))
        assert (await events.get())["type"] == "lifespan.startup.complete"
    bodies = [json.dumps({"inputs": [t]}).encode() for t in texts]
    for i in range(200):
        assert await call(app, path, bodies[i % len(bodies)]) == 200
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for r in range(40):
            await asyncio.gather(*(call(app, path, bodies[(r * 64 + i) % len(bodies)]) for i in range(64)))
        best = min(best, (time.process_time() - start) / (40 * 64) * 1e6)
    if task is not None:
        await startup.put({"type": "lifespan.shutdown"})
        await task
    return best


def bare_app() -> Any:
    app = FastAPI()

    @app.post("/v1/models/bare/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok": true}', media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model URI or folder")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="serve setting k=v")
    args = parser.parse_args()
    import uvloop

    from miniml.runtime import resolve
    from miniml.serve import ServeSettings, create_app

    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (the access log would otherwise go to the terminal)
    name = resolve(args.model).name
    texts = [f"Hej, hvordan har du det i dag? {i}" for i in range(512)]
    from miniml.config import deep_merge, parse_overrides, validate

    given = deep_merge({"models": [args.model], "cache": {"backend": "none"}}, parse_overrides(args.sets))
    settings = validate(ServeSettings, given, "--set")
    full = uvloop.run(cpu_per_request(create_app(settings), f"/v1/models/{name}/predict", texts, True))
    bare = uvloop.run(cpu_per_request(bare_app(), "/v1/models/bare/predict", texts, False))
    facts = {"machine": machine(), "model": args.model, "set": args.sets}
    print(json.dumps(facts, indent=2), file=sys.__stdout__)
    print(f"miniml serve (model included): {full:.1f} µs CPU/request", file=sys.__stdout__)
    print(f"bare FastAPI endpoint:          {bare:.1f} µs CPU/request", file=sys.__stdout__)


if __name__ == "__main__":
    main()

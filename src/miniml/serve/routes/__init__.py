"""The HTTP routes, one module per resource; every model route calls ``inference.run_inference``.

- ``predict``: ``POST /v1/models/{name}/predict`` (+ the ASGI fast path in front of FastAPI);
- ``generate``: ``POST /v1/models/{name}/generate``;
- ``openai``: ``POST /v1/completions``, ``POST /v1/chat/completions``;
- ``models``: ``GET /v1/models``, ``GET /v1/models/{name}``;
- ``operations``: ``/healthz``, ``/readyz``, ``/metrics``.
"""

from __future__ import annotations

from fastapi import APIRouter

from miniml.serve.routes import generate, models, openai, operations, predict

ROUTERS: tuple[APIRouter, ...] = (
    predict.router,
    models.router,
    operations.router,
    generate.router,
    openai.router,
)

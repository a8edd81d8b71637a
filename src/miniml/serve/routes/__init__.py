"""The HTTP routes, one module per resource; every inference route calls ``inference.run_inference``.

- ``predict``: ``POST /v1/models/{name}/predict`` (+ the ASGI fast path in front of FastAPI);
- ``generate``: ``POST /v1/models/{name}/generate``;
- ``openai``: ``POST /v1/completions``, ``POST /v1/chat/completions``;
- ``embeddings``: ``POST /v1/embeddings``, ``POST /v1/models/{name}/embeddings``;
- ``models``: ``GET /v1/models``, ``GET /v1/models/{name}``, ``GET /v1/models/{name}/card``;
- ``operations``: ``/healthz``, ``/readyz``, ``/metrics``;
- ``console``: the web console's ``/ui`` files (``create_app`` adds ``ui_router()`` unless
  ``server.ui: false``).
- ``monitoring``: ``GET /v1/models/{name}/drift``, ``POST``/``GET /v1/models/{name}/feedback``.
"""

from __future__ import annotations

from fastapi import APIRouter

from miniml.serve.routes import embeddings, generate, models, monitoring, openai, operations, predict

ROUTERS: tuple[APIRouter, ...] = (
    predict.router,
    models.router,
    operations.router,
    generate.router,
    openai.router,
    embeddings.router,
    monitoring.router,
)

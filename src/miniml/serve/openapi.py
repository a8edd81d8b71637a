"""The OpenAPI document at ``/openapi.json``: FastAPI's, plus what it cannot infer from our routes.

Routes that read their body themselves (predict, generate, the OpenAI-compatible ones) declare it with
``openapi_extra``; the nested models those bodies use are added to ``components.schemas`` here. The two
ways to send a key are declared as security schemes (``bearer``: ``Authorization: Bearer KEY``;
``apiKey``: ``X-API-Key``), required on every route but ``auth.open_routes`` when keys are on, so
generated clients send them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def install_openapi(
    app: FastAPI, *, open_routes: frozenset[str], keys_on: bool, models: list[type[BaseModel]]
) -> None:
    """Make ``app.openapi()`` return the completed document (built once, then cached by FastAPI)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in body.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas.setdefault(model.__name__, body)
        components["securitySchemes"] = SECURITY_SCHEMES
        if keys_on:
            for path, operations in doc.get("paths", {}).items():
                for operation in operations.values():
                    operation["security"] = [] if path in open_routes else [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]

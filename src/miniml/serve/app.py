"""``create_app(settings)``: the FastAPI app of ``miniml serve``.

Models load in the lifespan (or come preloaded from :func:`miniml.serve.server.run`, which fails fast on a
bad URI before binding the port); the lifespan's exit drains the batchers. Every error answer is JSON
(:mod:`miniml.serve.errors`): client mistakes are 4xx, only real bugs are 500 (logged with the request id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from miniml.errors import MinimlError
from miniml.runtime.loaded import LoadedModel
from miniml.serve.errors import HTTPProblem, problem_body, problem_response
from miniml.serve.middleware import ObservabilityMiddleware
from miniml.serve.openai import ChatRequest, CompletionRequest
from miniml.serve.openapi import install_openapi
from miniml.serve.requestinfo import request_info
from miniml.serve.routes import ROUTERS
from miniml.serve.routes.console import ui_router
from miniml.serve.routes.predict import PredictFastPath
from miniml.serve.settings import ServeSettings
from miniml.serve.state import ServerState
from miniml.tasks.base import ServingHooks
from miniml.version import __version__

DESCRIPTION = """\
Serve miniml models. Authenticate with `Authorization: Bearer KEY` or `X-API-Key: KEY`.
Errors are JSON: `{"error": {"code", "message", "request_id", ...}}`; 429 and 503 carry `Retry-After`.
"""


# FastAPI's native OpenTelemetry: off unless asked for (Prometheus metrics are always on).
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
TELEMETRY_ON: TelemetryConfig = {"tracing": True, "metrics": True, "logs": True, "operation_spans": False}


def request_id(request: Request) -> str | None:
    info = request_info(request.scope)
    return info.request_id if info else None


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return problem_response(exc, request_id(request))


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()[:10]]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    message = f"{'.'.join(first['loc']) or 'request'}: {first['msg']}"
    return problem_response(HTTPProblem(422, "invalid_request", message, errors=errors), request_id(request))


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    problem = HTTPProblem(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers=exc.headers,
    )
    return problem_response(problem, request_id(request))


async def on_miniml_error(request: Request, exc: Exception) -> Response:
    return problem_response(HTTPProblem(400, "bad_request", str(exc)), request_id(request))


async def on_internal_error(request: Request, exc: Exception) -> Response:
    """A bug inside a FastAPI route: a JSON 500 (the observability layer logs it with the request id)."""
    body = problem_body("internal_error", "internal server error; it has been logged", request_id(request))
    return Response(body, status_code=500, media_type="application/json")


class MinimlAPI(FastAPI):
    """FastAPI with layers *outside* its own stack: the predict fast path then skips FastAPI's routing,
    dependency solving and middleware layers entirely (the whole hot path is our code), while every other
    route, the lifespan, OpenAPI and ``dependency_overrides`` work as in any FastAPI app."""

    _outer: ASGIApp | None = None

    def wrap_outside(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Put ``wrap(FastAPI's own handling)`` in front of every request."""
        self._outer = wrap(partial(FastAPI.__call__, self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._outer is None:
            await super().__call__(scope, receive, send)
        else:
            await self._outer(scope, receive, send)


def create_app(
    settings: ServeSettings,
    *,
    preloaded: list[tuple[LoadedModel, ServingHooks]] | None = None,
    challengers: dict[str, tuple[LoadedModel, ServingHooks]] | None = None,
    embedder: LoadedModel | None = None,
) -> FastAPI:
    """The app serving ``settings.models`` (or the ``preloaded`` models) with every server feature;
    ``embedder``: the semantic cache's model, preloaded (else loaded in the lifespan)."""
    state = ServerState(settings, preloaded=preloaded, challengers=challengers, embedder=embedder)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    docs = settings.server.docs
    app = MinimlAPI(
        title="miniml",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        telemetry=TELEMETRY_ON if settings.server.opentelemetry else TELEMETRY_OFF,
        redirect_slashes=False,  # /predict/ is a 404, not a 307 to a Location built from the Host header
    )
    app.state.miniml = state
    for router in ROUTERS:
        app.include_router(router)
    if settings.server.ui:
        app.include_router(ui_router())  # issue 19: the web console at /ui
    install_openapi(
        app,
        open_routes=state.access.open_routes,
        keys_on=state.access.keys.enabled,
        models=[ChatRequest, CompletionRequest],
    )
    app.wrap_outside(
        lambda inner: ObservabilityMiddleware(
            PredictFastPath(inner, state=state), metrics=state.metrics, access_log=state.access_log
        )
    )
    app.add_exception_handler(Exception, on_internal_error)
    app.add_exception_handler(HTTPProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(MinimlError, on_miniml_error)
    return app

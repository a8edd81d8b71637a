"""The web console at ``/ui`` (the card it shows comes from ``GET /v1/models/{name}/card``, in ``models``).

The console is three static files shipped in the package (``serve/ui/``: HTML, CSS, plain JavaScript; no
build step). They are public, like ``/docs``: the page holds no data. Everything it shows comes from the
public API, called by the browser with the key the user types (kept in ``sessionStorage``), so the
console can do exactly what that key can do and nothing more. The files are served with a strict
Content-Security-Policy: scripts and styles only from this server's files (no inline script or style, no
``eval``), requests only to this server, no framing, no form posts, no referrer.

``server.ui: false`` removes the ``/ui`` routes (``create_app`` adds ``ui_router()`` otherwise); the card
endpoint is part of the API and stays.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Response

from miniml.serve.errors import HTTPProblem

FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def ui_router() -> APIRouter:
    """The ``/ui`` routes, with the files read from the package once."""
    files = {name: _read(name) for name in FILES}
    router = APIRouter(include_in_schema=False)

    def respond(name: str) -> Response:
        return Response(files[name], media_type=FILES[name], headers=SECURITY_HEADERS)

    @router.get("/ui")
    @router.get("/ui/")
    async def index() -> Response:
        return respond("index.html")

    @router.get("/ui/{name}")
    async def asset(name: str) -> Response:
        if name not in files:
            raise HTTPProblem(404, "not_found", f"no console file {name!r}", headers=SECURITY_HEADERS)
        return respond(name)

    return router


def _read(name: str) -> bytes:
    return resources.files("miniml.serve").joinpath("ui", name).read_bytes()


def csp_directives() -> dict[str, str]:
    """The console's CSP as directive → value (tests and docs read it)."""
    return dict(part.strip().split(" ", 1) for part in CSP.split(";"))

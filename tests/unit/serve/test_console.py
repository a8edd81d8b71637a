"""The console's static files and routes: shipped in the package, no inline script or style, a strict CSP,
off with ``server.ui: false``."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources

from fastapi.testclient import TestClient

from miniml.serve.app import create_app
from miniml.serve.routes.console import FILES, csp_directives
from miniml.serve.settings import ServeSettings


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data.strip()


def test_files_are_package_data_without_inline_code() -> None:
    ui = resources.files("miniml.serve").joinpath("ui")
    assert {p.name for p in ui.iterdir()} >= set(FILES)
    page = Tags()
    page.feed(ui.joinpath("index.html").read_text(encoding="utf-8"))
    assert page.inline_script == ""
    assert [a["src"] for t, a in page.tags if t == "script"] == ["/ui/console.js"]
    assert not [t for t, a in page.tags if "style" in a or any(k.startswith("on") for k in a)]
    assert not [t for t, _ in page.tags if t == "style"]
    script = ui.joinpath("console.js").read_text(encoding="utf-8")
    assert not re.search(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", script
    )
    assert "localStorage.setItem" not in script and "document.cookie" not in script


def test_csp_allows_only_this_server() -> None:
    csp = csp_directives()
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert "unsafe" not in " ".join(csp.values())


def test_ui_routes_follow_the_setting() -> None:
    off = TestClient(create_app(ServeSettings.model_validate({"server": {"ui": False}})))
    for path in ("/ui", "/ui/", "/ui/console.js"):
        assert off.get(path).status_code == 404
    assert "/v1/models/{name}/card" in off.get("/openapi.json").json()["paths"]  # the API keeps the card
    on = TestClient(create_app(ServeSettings()))
    assert [on.get(p).status_code for p in ("/ui", "/ui/", "/ui/console.js", "/ui/console.css")] == [200] * 4


def test_files_and_headers_without_models() -> None:
    client = TestClient(create_app(ServeSettings()))  # no lifespan: static routes need no model
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert client.get("/ui/console.js").headers["content-type"].startswith("text/javascript")
    missing = client.get("/ui/../../etc/passwd")
    assert missing.status_code == 404
    assert client.get("/ui/secrets.txt").json()["error"]["code"] == "not_found"
    schema = client.get("/openapi.json").json()["paths"]
    assert "/v1/models/{name}/card" in schema and not [p for p in schema if p.startswith("/ui")]

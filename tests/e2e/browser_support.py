"""A real headless Chromium driven over the Chrome DevTools Protocol, for the console's browser tests.

Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it) starts with a fresh profile and
``--remote-debugging-port=0``; the test talks to the page's DevTools websocket with the ``websockets``
client already installed for uvicorn. Clicks and typing are real input events (``Input.*``), not
JavaScript calls on the page's functions. Console messages, uncaught exceptions and CSP violations are
collected so a test can assert there were none.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1280,1400",
    "--remote-debugging-port=0",
]


def chromium_binary() -> str:
    """Debian's chromium; a loud skip (with the install line) where it is absent. CI installs it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "BROWSER TEST SKIPPED: no chromium on this machine (apt-get install -y chromium); "
        ".ci/run installs it, so CI runs this test"
    )


def element(selector: str) -> str:
    """The JavaScript expression for the element ``selector`` finds."""
    return f"document.querySelector({json.dumps(selector)})"


class BrowserError(AssertionError):
    """The page threw, or a wait timed out (with what the page showed)."""


class Browser:
    """One headless Chromium with one page; ``close()`` ends it."""

    def __init__(self, tmp: Path, timeout: float = 30) -> None:
        profile = tmp / "chromium-profile"
        profile.mkdir(parents=True)
        self.log_path = tmp / "chromium.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.ws: ClientConnection = connect(self._page_socket(profile), max_size=None, open_timeout=timeout)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def _page_socket(self, profile: Path) -> str:
        """The page target's DevTools websocket URL (the port is in ``DevToolsActivePort``)."""
        deadline = time.monotonic() + self.timeout
        port_file = profile / "DevToolsActivePort"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            if port_file.is_file() and port_file.read_text().strip():
                port = port_file.read_text().split()[0]
                try:
                    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                except httpx.HTTPError:
                    targets = []
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise BrowserError("chromium did not open its DevTools port")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are kept in ``events``."""
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=self.timeout))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && document.body.dataset.ready === 'true'")

    def wait_for(self, condition: str, timeout: float | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        probe = f"(() => {{ const v = ({condition}); return v instanceof Node ? true : v; }})()"
        while time.monotonic() < deadline:
            value = self.evaluate(probe)
            if value:
                return value
            time.sleep(0.1)
        shown = self.evaluate("document.body.innerText")
        raise BrowserError(f"timed out waiting for {condition!r}; the page shows:\n{shown}")

    def text(self, selector: str) -> str:
        return str(self.evaluate(f"{element(selector)}.innerText"))

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        box = self.evaluate(
            "(e => { e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            f" return [r.x + r.width / 2, r.y + r.height / 2]; }})({element(selector)})"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str, *, clear: bool = True) -> None:
        """Focus the field and type ``text`` as keyboard input (after selecting what was there)."""
        self.evaluate(f"{element(selector)}.focus()")
        if clear:
            self.evaluate(f"{element(selector)}.select()")
        self.send("Input.insertText", text=text)

    def select(self, selector: str, value: str) -> None:
        """Choose an option of a <select> the way a user does (the change event fires)."""
        change = "s.dispatchEvent(new Event('change', {bubbles: true}))"
        self.evaluate(f"(s => {{ s.value = {json.dumps(value)}; {change}; }})({element(selector)})")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def problems(self) -> list[str]:
        """Uncaught exceptions, console errors and CSP violations seen so far."""
        self.send("Runtime.evaluate", expression="0")  # flush pending events
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif (
                method == "Log.entryAdded"
                and params["entry"].get("level") == "error"
                and params["entry"].get("source") != "network"  # an API's 4xx answer is not a page error
            ):
                found.append(f"log: {params['entry'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(f"console: {[a.get('value') for a in params.get('args', [])]}")
        return found

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone: the process is reaped below
            self.send("Browser.close")
        self.ws.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

"""The web console in a real headless Chromium against a real `miniml serve` (a tiny classifier and a tiny
seq2seq model): keys, a prediction with probability bars, a streamed generation, structured output, the
model card and the traffic table; the API's own error for a wrong key; a screenshot in the test's folder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_support import Browser, chromium_binary

import tiny_generative as tg
from miniml.tasks.generative_serving import GenerateRequest
from serve_support import ServerProcess, write_yaml

TEXT = "hej med dig hvordan går det"
PROMPT = "digits: one two three"


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, toy_model: Path
) -> Iterator[tuple[ServerProcess, str]]:
    from miniml.serve.auth import add_key

    chromium_binary()  # skip before starting anything when there is no browser
    tmp = tmp_path_factory.mktemp("console_server")
    key = add_key(tmp / "keys.yaml", "admin")
    config = write_yaml(
        tmp / "serve.yaml",
        {
            "models": [str(toy_model), str(tg.trained_folder("t5"))],
            "auth": {"keys_file": "keys.yaml"},
            "batching": {"max_wait_ms": 2, "threads": 1},
        },
    )
    server = ServerProcess(["--config", str(config)], tmp).wait_ready(timeout=180)
    yield server, key
    assert server.terminate() == 0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chromium = Browser(tmp_path)
    yield chromium
    chromium.close()


def error_shown(browser: Browser, needle: str) -> str:
    return str(
        browser.wait_for(
            f"(t => t.includes({json.dumps(needle)}) && t)(document.getElementById('error').innerText)"
        )
    )


def test_console_in_a_real_browser(
    console_server: tuple[ServerProcess, str], browser: Browser, tmp_path: Path
) -> None:
    server, key = console_server
    auth = {"Authorization": f"Bearer {key}"}
    browser.open(f"{server.url}/ui")

    # no key yet, then a wrong one: the page shows what the API said
    assert "401 missing_api_key: send an API key" in error_shown(browser, "missing_api_key")
    browser.type("#api-key", "mk_not-a-real-key")
    browser.click("#key-use")
    assert error_shown(browser, "invalid_api_key") == "401 invalid_api_key: the API key is not valid"

    browser.type("#api-key", key)
    browser.click("#key-use")
    browser.wait_for("document.querySelectorAll('#models tbody tr').length === 2")
    assert browser.evaluate("document.getElementById('error').hidden")
    rows = browser.evaluate("[...document.querySelectorAll('#models tbody tr')].map(r => r.innerText)")
    assert any(r.startswith("toy\tfolder\t\tclassification\ttorch\tda, nn, sv") for r in rows), rows
    assert any(r.startswith("tiny-t5\tfolder\t\tseq2seq\ttorch") for r in rows), rows
    # the key lives in this tab's sessionStorage only, and the field was emptied
    assert browser.evaluate("sessionStorage.getItem('miniml.apiKey')") == key
    assert browser.evaluate("localStorage.length + document.cookie.length") == 0
    assert browser.evaluate("document.getElementById('api-key').value") == ""

    # classification: probability bars equal the API's answer
    browser.click("[data-open='toy']")
    browser.type("#classify-text", TEXT)
    for _ in range(2):  # the second one is a cache hit
        browser.click("#classify-run")
        browser.wait_for("document.querySelectorAll('#classify-result .bar').length === 3")
    bars = browser.evaluate(
        "[...document.querySelectorAll('#classify-result .bar')].map(b => [b.dataset.label, "
        "Number(b.querySelector('progress').value), b.querySelector('.value').innerText])"
    )
    body = {"inputs": [TEXT], "top_k": 3}
    api = httpx.post(f"{server.url}/v1/models/toy/predict", json=body, headers=auth, timeout=30).json()
    expected = [(t["label"], t["score"]) for t in api["predictions"][0]["top_k"]]
    assert [(b[0], pytest.approx(b[1], abs=1e-6)) for b in bars] == expected
    assert [b[2] for b in bars] == [f"{100 * s:.1f}%" for _, s in expected]
    assert bars[0][0] == "da"

    # traffic from two /metrics samples: the predictions show up, with latency and a cache hit
    stats = browser.wait_for(
        "(r => r && r.cells[4].innerText !== '–' && [...r.cells].map(c => c.innerText))"
        "(document.querySelector('#stats tr[data-model=\"toy\"]'))",
        timeout=10,
    )
    assert float(stats[1]) > 0 and stats[2].endswith(" ms") and stats[3].endswith(" ms")
    assert re.fullmatch(r"\d+%", stats[4]) and int(stats[4][:-1]) > 0, stats

    # generation, streamed: the text equals the API's greedy answer for the same request
    browser.click("[data-open='tiny-t5']")
    browser.type("#generate-text", PROMPT)
    browser.type("#generate-max", "8")
    browser.click("#generate-run")
    browser.wait_for("document.getElementById('generate-status').dataset.state === 'done'")
    streamed = browser.text("#generate-output")
    body = {"inputs": [PROMPT], "max_new_tokens": 8, "temperature": 0}
    api = httpx.post(f"{server.url}/v1/models/tiny-t5/generate", json=body, headers=auth, timeout=60).json()
    assert streamed == api["generations"][0]["text"] and streamed.strip()
    assert browser.text("#generate-status").startswith("done: ")
    browser.screenshot(tmp_path / "console-generate.png")

    # structured output: the server's answer, whichever it is (guided decoding is another issue's work)
    browser.select("#guided-kind", "regex")
    browser.type("#guided-value", "[0-9]( [0-9]){2}")  # 5 characters: well inside the 8-token cap
    browser.click("#generate-run")
    if "guided" in GenerateRequest.model_fields:
        browser.wait_for("document.getElementById('generate-status').dataset.state === 'done'")
        assert re.fullmatch(r"[0-9]( [0-9]){2}", browser.text("#generate-output"))
    else:
        assert "422 invalid_request: guided: Extra inputs are not permitted" in error_shown(browser, "guided")

    # the model card
    browser.click("#tab-card")
    browser.wait_for("document.querySelector('#card h3')")
    assert browser.text("#card h3") == "tiny-t5"
    assert "Text-to-text generation (encoder-decoder) model tiny-t5 (hf, torch runtime)" in browser.text(
        "#card"
    )
    assert browser.evaluate("document.querySelector('#card details summary').innerText").startswith(
        "Metadata"
    )
    shot = browser.screenshot(tmp_path / "console.png")
    assert shot.stat().st_size > 10_000
    assert browser.problems() == []  # no exception, no CSP violation, no console error

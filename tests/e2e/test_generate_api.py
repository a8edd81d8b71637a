"""The real server with generative models: /generate (JSON + SSE), batching, caps, disconnects, metrics."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from generate_support import gen_server

import tiny_generative as tg
from serve_support import ServerProcess

__all__ = ["gen_server"]  # the session-wide server fixture

T5_PROMPTS = [p[0] for p in tg.PAIRS[:6]]


def post(server: ServerProcess, path: str, body: object, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=120)


def events(response: httpx.Response) -> list[object]:
    """The ``data:`` payloads of a server-sent-event stream (JSON, or the literal ``[DONE]``)."""
    out: list[object] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def metric(server: ServerProcess, name: str, model: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="{model}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_generate_matches_offline_greedy_generation(gen_server: tuple[ServerProcess, dict]) -> None:
    from miniml.runtime.generation import GenerationParams
    from miniml.tasks import load_generator

    server, keys = gen_server
    r = post(
        server, "/v1/models/tiny-t5/generate", {"inputs": T5_PROMPTS[:3], "max_new_tokens": 8}, keys["admin"]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-t5" and len(body["generations"]) == 3
    offline = load_generator(tg.trained_folder("t5")).generate(
        T5_PROMPTS[:3], GenerationParams(max_new_tokens=8)
    )
    assert [g["text"] for g in body["generations"]] == offline
    first = body["generations"][0]
    assert first["finish_reason"] in {"stop", "length"} and first["prompt_tokens"] > 0
    assert 0 < first["completion_tokens"] <= 8


def test_stream_sends_pieces_that_join_to_the_answer(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    body = {"inputs": T5_PROMPTS[:2], "max_new_tokens": 8}
    plain = post(server, "/v1/models/tiny-t5/generate", body, keys["admin"]).json()["generations"]
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    url = f"{server.url}/v1/models/tiny-t5/generate"
    with httpx.stream("POST", url, json={**body, "stream": True}, headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = events(r)
    assert got[-1] == "[DONE]"
    pieces = [e for e in got if isinstance(e, dict) and "text" in e and not e.get("done")]
    assert len(pieces) >= 2
    finals = {e["index"]: e for e in got if isinstance(e, dict) and e.get("done")}
    for row in (0, 1):
        assert "".join(p["text"] for p in pieces if p["index"] == row) == plain[row]["text"]
        assert (
            finals[row]["text"] == plain[row]["text"]
            and finals[row]["finish_reason"] == plain[row]["finish_reason"]
        )


def concurrently(server: ServerProcess, key: str, model: str, prompts: list[str], tokens: int) -> list[str]:
    """Send one request per prompt from as many threads, released together by a barrier."""
    answers: dict[int, str] = {}
    start = threading.Barrier(len(prompts))

    def call(i: int) -> None:
        start.wait()
        body = {"inputs": [prompts[i]], "max_new_tokens": tokens}
        r = post(server, f"/v1/models/{model}/generate", body, key)
        answers[i] = r.json()["generations"][0]["text"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [answers[i] for i in range(len(prompts))]


def test_concurrent_requests_share_batches(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    # endless never stops before its cap: 8 requests x 47 decoding steps (the prefill makes the first token)
    before = [metric(server, f"miniml_batch_size_{k}", "endless") for k in ("sum", "count")]
    concurrently(server, keys["admin"], "endless", [p[0] for p in tg.PAIRS[:8]], 48)
    rows, steps = (
        metric(server, f"miniml_batch_size_{k}", "endless") - b
        for k, b in zip(("sum", "count"), before, strict=True)
    )
    assert rows >= 8 * 47 and rows / steps > 1.5  # decoding steps ran several requests' rows at once


def test_concurrent_answers_equal_one_batched_request(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    prompts = [p[0] for p in tg.PAIRS[:8]]
    answers = concurrently(server, keys["admin"], "tiny-gpt2", prompts, 6)
    alone = post(
        server, "/v1/models/tiny-gpt2/generate", {"inputs": prompts, "max_new_tokens": 6}, keys["admin"]
    )
    assert answers == [g["text"] for g in alone.json()["generations"]]


@pytest.mark.parametrize(
    ("model", "body", "status", "code"),
    [
        ("tiny-t5", {"inputs": ["one"], "max_new_tokens": 5000}, 422, "max_new_tokens_too_large"),
        ("tiny-t5", {"inputs": [" ".join(["nine"] * 100)]}, 413, "prompt_too_long"),
        ("tiny-t5", {"inputs": ["one"], "stream": True, "num_beams": 2}, 422, "invalid_request"),
        ("tiny-t5", {"inputs": ["one"], "temperature": -1}, 422, "invalid_request"),
        ("toy", {"inputs": ["hej"], "stream": True}, 400, "not_generative"),
        ("nope", {"inputs": ["one"]}, 404, "model_not_found"),
    ],
)
def test_bad_generation_requests_are_4xx_json(
    gen_server: tuple[ServerProcess, dict], model: str, body: dict, status: int, code: str
) -> None:
    server, keys = gen_server
    r = post(server, f"/v1/models/{model}/generate", body, keys["admin"])
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_generate_needs_a_key(gen_server: tuple[ServerProcess, dict]) -> None:
    server, _ = gen_server
    r = post(server, "/v1/models/tiny-t5/generate", {"inputs": ["one"]}, None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


def test_disconnect_stops_the_generation(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    before = metric(server, "miniml_generated_tokens_total", "endless")
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    url = f"{server.url}/v1/models/endless/generate"
    with httpx.stream("POST", url, json={"inputs": ["one two"], "max_new_tokens": 4000, "stream": True},
                      headers=headers, timeout=60) as r:  # fmt: skip
        assert r.status_code == 200
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 5:
                break  # leave: closing the stream disconnects
    start = time.monotonic()
    # The worker is free again once the cancelled row stopped: a short request does not wait for 4,000 tokens.
    quick = post(
        server, "/v1/models/endless/generate", {"inputs": ["one"], "max_new_tokens": 3}, keys["admin"]
    )
    assert quick.status_code == 200 and quick.json()["generations"][0]["completion_tokens"] == 3
    assert time.monotonic() - start < 15
    generated = metric(server, "miniml_generated_tokens_total", "endless") - before
    assert 3 < generated < 1000, generated  # the 4,000-token answer was cut short


def test_generation_metrics_are_exported(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    post(server, "/v1/models/tiny-gpt2/generate", {"inputs": ["digits: one", "digits: two"]}, keys["admin"])
    assert metric(server, "miniml_generated_tokens_total", "tiny-gpt2") > 0
    assert metric(server, "miniml_time_to_first_token_seconds_count", "tiny-gpt2") >= 1

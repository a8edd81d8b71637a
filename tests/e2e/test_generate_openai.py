"""The official `openai` Python client against the local server: completions, chat, streaming, errors."""

from __future__ import annotations

import httpx
import openai
import pytest
from generate_support import gen_server

import tiny_generative as tg
from serve_support import ServerProcess

__all__ = ["gen_server"]  # the session-wide server fixture
PROMPTS = [p[0] for p in tg.PAIRS[:3]]


def client(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def native(server: ServerProcess, key: str, prompts: list[str], max_new_tokens: int) -> list[str]:
    r = httpx.post(
        f"{server.url}/v1/models/tiny-gpt2/generate",
        json={"inputs": prompts, "max_new_tokens": max_new_tokens, "temperature": 0},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    return [g["text"] for g in r.json()["generations"]]


def test_completions(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    expected = native(server, keys["admin"], PROMPTS, 6)
    c = client(server, keys["admin"])
    one = c.completions.create(model="tiny-gpt2", prompt=PROMPTS[0], max_tokens=6, temperature=0)
    assert one.object == "text_completion" and one.model == "tiny-gpt2"
    assert one.choices[0].text == expected[0] and one.choices[0].finish_reason in {"stop", "length"}
    assert one.usage is not None and one.usage.completion_tokens <= 6
    assert one.usage.total_tokens == one.usage.prompt_tokens + one.usage.completion_tokens
    many = c.completions.create(model="tiny-gpt2", prompt=PROMPTS, max_tokens=6, temperature=0)
    assert [choice.text for choice in sorted(many.choices, key=lambda x: x.index)] == expected


def test_streamed_completion_joins_to_the_answer(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    expected = native(server, keys["admin"], PROMPTS[:1], 6)[0]
    stream = client(server, keys["admin"]).completions.create(
        model="tiny-gpt2", prompt=PROMPTS[0], max_tokens=6, temperature=0, stream=True
    )
    chunks = list(stream)
    assert len(chunks) >= 2
    assert "".join(ch.choices[0].text for ch in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_chat_completion_plain_and_streamed(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    expected = native(server, keys["admin"], PROMPTS[:1], 6)[0]  # no chat template: the last user turn
    c = client(server, keys["admin"])
    messages = [{"role": "system", "content": "answer with digits"}, {"role": "user", "content": PROMPTS[0]}]
    reply = c.chat.completions.create(model="tiny-gpt2", messages=messages, max_tokens=6, temperature=0)  # type: ignore[arg-type]
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content == expected
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    stream = c.chat.completions.create(
        model="tiny-gpt2",
        messages=messages,  # type: ignore[arg-type]
        max_completion_tokens=6,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_client_sees_401_and_429(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    with pytest.raises(openai.AuthenticationError) as denied:
        client(server, "mk_not-a-key").completions.create(model="tiny-gpt2", prompt="one", max_tokens=2)
    assert denied.value.status_code == 401 and "not valid" in str(denied.value)
    metered = client(server, keys["metered"])
    for _ in range(2):  # the key's budget: 2 requests per minute
        metered.completions.create(model="tiny-gpt2", prompt="one", max_tokens=2)
    with pytest.raises(openai.RateLimitError) as limited:
        metered.completions.create(model="tiny-gpt2", prompt="one", max_tokens=2)
    assert limited.value.status_code == 429
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_client_sees_clear_4xx_for_bad_requests(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    c = client(server, keys["admin"])
    with pytest.raises(openai.BadRequestError, match="cannot generate"):
        c.completions.create(model="toy", prompt="hej", max_tokens=2)
    with pytest.raises(openai.UnprocessableEntityError, match="at most 4096"):
        c.completions.create(model="tiny-gpt2", prompt="one", max_tokens=5000)
    with pytest.raises(openai.APIStatusError) as too_long:
        c.completions.create(model="tiny-gpt2", prompt=" ".join(["nine"] * 100), max_tokens=2)
    assert too_long.value.status_code == 413
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="user message"):
        c.chat.completions.create(model="tiny-gpt2", messages=[{"role": "system", "content": "hi"}])

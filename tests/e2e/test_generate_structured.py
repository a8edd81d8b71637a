"""Structured outputs, token budgets and OpenAI's model routes, through the official `openai` client."""

from __future__ import annotations

import json
import time

import httpx
import jsonschema
import openai
import pytest
from generate_support import gen_server

import tiny_generative as tg
from serve_support import ServerProcess

__all__ = ["gen_server"]  # the session-wide server fixture
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 8},
        "digits": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3},
    },
    "required": ["answer", "digits"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "digits", "schema": SCHEMA, "strict": True},
}
MESSAGES = [{"role": "user", "content": p[0]} for p in tg.PAIRS[:6]]


def client(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def generate(server: ServerProcess, key: str, body: dict[str, object]) -> httpx.Response:
    url = f"{server.url}/v1/models/tiny-gpt2/generate"
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_response_format_makes_every_answer_valid_json(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    c = client(server, keys["admin"])
    free = [
        c.chat.completions.create(model="tiny-gpt2", messages=[m], max_tokens=40, temperature=1.0)  # type: ignore[list-item]
        .choices[0]
        .message.content
        for m in MESSAGES
    ]
    # unguided, the tiny LM writes nothing that fits the schema (a sampled bare " 2" is JSON, not an answer)
    assert not any(_fits_schema(text or "") for text in free), free
    for message in MESSAGES * 2:
        reply = c.chat.completions.create(
            model="tiny-gpt2",
            messages=[message],  # type: ignore[list-item]
            max_tokens=60,
            temperature=1.0,
            response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
        )
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), SCHEMA)
    stream = c.chat.completions.create(
        model="tiny-gpt2",
        messages=MESSAGES[:1],  # type: ignore[arg-type]
        max_tokens=60,
        temperature=1.0,
        stream=True,
        response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
    )
    jsonschema.validate(json.loads("".join(ch.choices[0].delta.content or "" for ch in stream)), SCHEMA)
    completion = c.completions.create(
        model="tiny-gpt2",
        prompt=[m["content"] for m in MESSAGES[:3]],
        max_tokens=60,
        temperature=1.0,
        extra_body={"response_format": {"type": "json_object"}},
    )
    for choice in completion.choices:  # any object: it may be cut at max_tokens, never anything else
        assert choice.text.startswith("{")
        assert choice.finish_reason == "length" or isinstance(json.loads(choice.text), dict)


def test_generate_guided_regex_choice_and_grammar(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    prompts = [p[0] for p in tg.PAIRS[:3]]
    cases = [
        ({"regex": "[0-9]-[0-9]{2}"}, lambda t: len(t) == 4 and t[1] == "-" and t.replace("-", "").isdigit()),
        ({"choice": ["yes", "no"]}, lambda t: t in {"yes", "no"}),
        ({"grammar": 'start: "x" "y"? "z"? "!"'}, lambda t: t in {"x!", "xy!", "xz!", "xyz!"}),
    ]
    for guided, valid in cases:
        r = generate(server, keys["admin"], {"inputs": prompts, "guided": guided, "max_new_tokens": 20})
        assert r.status_code == 200, r.text
        texts = [g["text"] for g in r.json()["generations"]]
        assert all(valid(t) for t in texts), (guided, texts)


@pytest.mark.parametrize(
    ("guided", "code", "words"),
    [
        ({"regex": "(ab"}, "invalid_constraint", "unclosed group"),
        ({"grammar": "start: undefined_rule"}, "invalid_constraint", "undefined_rule"),
        ({"json_schema": {"type": "objekt"}}, "invalid_constraint", "objekt"),
        ({"regex": "a" * 4001}, "constraint_too_large", "4000"),
        ({"regex": "a", "choice": ["a"]}, "invalid_request", "exactly one"),
    ],
)
def test_bad_constraints_are_422_naming_the_problem(
    gen_server: tuple[ServerProcess, dict], guided: dict[str, object], code: str, words: str
) -> None:
    server, keys = gen_server
    r = generate(server, keys["admin"], {"inputs": ["one"], "guided": guided})
    assert r.status_code == 422 and r.json()["error"]["code"] == code
    assert words in r.json()["error"]["message"]


def test_parameters_the_server_cannot_honour_are_400(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    c = client(server, keys["admin"])
    for extra in ({"n": 2}, {"logprobs": 2}, {"seed": 7}, {"presence_penalty": 0.5}):
        with pytest.raises(openai.BadRequestError, match=next(iter(extra))):
            c.completions.create(model="tiny-gpt2", prompt="one", max_tokens=2, **extra)  # type: ignore[call-overload]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="tools"):
        c.chat.completions.create(model="tiny-gpt2", messages=MESSAGES[:1], tools=[tool])  # type: ignore[arg-type, list-item]
    ok = c.completions.create(model="tiny-gpt2", prompt="one", max_tokens=2, n=1, user="me", seed=None)
    assert ok.choices


def test_models_list_and_retrieve_in_openai_shape(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    c = client(server, keys["admin"])
    listed = {m.id: m for m in c.models.list()}
    assert {"tiny-t5", "tiny-gpt2", "endless", "toy"} <= set(listed)
    gpt2 = c.models.retrieve("tiny-gpt2")
    assert gpt2.object == "model" and gpt2.owned_by == "miniml" and gpt2.created > 0
    extra = gpt2.model_extra or {}
    assert extra["task"] == "causal_lm" and extra["batching"] == "continuous"
    assert (listed["toy"].model_extra or {})["batching"] is None
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nope")
    raw = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {keys['admin']}"}).json()
    assert raw["object"] == "list" and raw["models"] == raw["data"]  # the earlier miniml shape is kept


def test_token_budget_reserves_refunds_and_refuses(gen_server: tuple[ServerProcess, dict]) -> None:
    server, keys = gen_server
    key = keys["tokens"]  # 200 tokens per minute
    first = generate(server, key, {"inputs": [tg.PAIRS[0][0]], "max_new_tokens": 60, "temperature": 0})
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "200"
    reserved = 200 - int(first.headers["x-ratelimit-remaining-tokens"])  # prompt + 60
    result = first.json()["generations"][0]
    assert reserved == result["prompt_tokens"] + 60 and result["completion_tokens"] < 60
    used = result["prompt_tokens"] + result["completion_tokens"]
    assert _remaining_after_refund(server, key) == 200 - used  # the unused part came back
    remaining = int(
        generate(server, key, {"inputs": ["x"], "max_new_tokens": 1}).headers["x-ratelimit-remaining-tokens"]
    )
    assert "x-ratelimit-remaining-requests" in first.headers
    c = client(server, key)
    with pytest.raises(openai.RateLimitError) as refused:
        c.completions.create(model="tiny-gpt2", prompt="one", max_tokens=remaining + 1)
    assert refused.value.status_code == 429 and int(refused.value.response.headers["retry-after"]) >= 1
    assert "tokens" in str(refused.value)


def _remaining_after_refund(server: ServerProcess, key: str) -> int:
    """The key's remaining tokens once the refund (sent right after the answer) has landed: read from a
    later 1-token probe's headers plus that probe's own reservation."""
    time.sleep(0.5)
    probe = generate(server, key, {"inputs": ["x"], "max_new_tokens": 1, "temperature": 0})
    reservation = probe.json()["generations"][0]["prompt_tokens"] + 1
    return int(probe.headers["x-ratelimit-remaining-tokens"]) + reservation


def _fits_schema(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True

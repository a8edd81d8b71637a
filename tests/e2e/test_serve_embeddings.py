"""``/v1/embeddings`` on a real server, through the official ``openai`` client (float and base64) and plain
HTTP: the same vectors as the model in-process, ``dimensions``, the cache, budgets and every bad input."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from embedding_support import make_embedding_folder, make_tiny_encoder
from miniml.serve.auth import add_key
from serve_support import ServerProcess, write_yaml

TEXTS = ["what is src3", "the tgt3 of kerr"]


@pytest.fixture(scope="module")
def emb_server(
    toy_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, dict[str, str], Path]]:
    tmp = tmp_path_factory.mktemp("emb_server")
    folder = make_embedding_folder(tmp / "emb", make_tiny_encoder(tmp / "encoder"), truncation=True)
    keys_file = tmp / "keys.yaml"
    keys = {"admin": add_key(keys_file, "admin"), "frugal": add_key(keys_file, "frugal", tokens="12/minute")}
    config = write_yaml(
        tmp / "serve.yaml",
        {
            "models": [str(folder), str(toy_model)],
            "auth": {"keys_file": "keys.yaml"},
            "limits": {"max_inputs": 8, "max_chars": 400},
            "batching": {"max_batch_size": 16, "max_wait_ms": 2},
        },
    )
    server = ServerProcess(["--config", str(config)], tmp).wait_ready()
    yield server, keys, folder
    assert server.terminate() == 0


def client(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


def metric(server: ServerProcess, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in httpx.get(f"{server.url}/metrics").text.splitlines()
        if line.startswith(prefix)
    )


def test_openai_client_float_and_base64(emb_server: tuple[ServerProcess, dict[str, str], Path]) -> None:
    from miniml.tasks import load_model

    server, keys, folder = emb_server
    expected = load_model(str(folder)).predictor.embed(TEXTS)  # (2, 32)
    c = client(server, keys["admin"])
    floats = c.embeddings.create(model="emb", input=TEXTS, encoding_format="float")
    assert floats.object == "list" and floats.model == "emb"
    assert [d.index for d in floats.data] == [0, 1]
    got = np.array([d.embedding for d in floats.data])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 5 + 6  # [CLS] ... [SEP]

    default = c.embeddings.create(model="emb", input=TEXTS[0])  # the client asks for base64 and decodes it
    np.testing.assert_allclose(np.array(default.data[0].embedding), expected[0], atol=1e-6)
    raw = c.embeddings.create(model="emb", input=TEXTS[0], encoding_format="base64")
    vector = np.frombuffer(base64.b64decode(str(raw.data[0].embedding)), dtype="<f4")
    np.testing.assert_array_equal(vector, np.array(default.data[0].embedding, dtype=np.float32))

    short = c.embeddings.create(model="emb", input=TEXTS, dimensions=8, encoding_format="float")
    cut = np.array([d.embedding for d in short.data])
    assert cut.shape == (2, 8) and np.allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cut[0], expected[0, :8] / np.linalg.norm(expected[0, :8]), atol=1e-5)


def test_native_route_batcher_cache_and_metrics(
    emb_server: tuple[ServerProcess, dict[str, str], Path],
) -> None:
    server, keys, _ = emb_server
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    texts = ["how many kerr", "who is ross"]
    hits = metric(server, 'miniml_cache_hits_total{kind="exact",model="emb"}')
    first = httpx.post(f"{server.url}/v1/models/emb/embeddings", json={"input": texts}, headers=headers)
    assert first.status_code == 200, first.text
    second = httpx.post(f"{server.url}/v1/models/emb/embeddings", json={"input": texts}, headers=headers)
    assert second.json()["data"] == first.json()["data"]
    assert metric(server, 'miniml_cache_hits_total{kind="exact",model="emb"}') == hits + 2
    assert (
        metric(server, 'miniml_requests_total{method="POST",model="emb",route="/v1/models/{name}/embeddings"')
        >= 2
    )
    assert metric(server, 'miniml_batch_size_count{model="emb"') >= 1


BAD = [
    ({"model": "emb", "input": ["fine", ""]}, 422, "empty_input"),
    ({"model": "emb", "input": []}, 422, "invalid_request"),
    ({"model": "emb", "input": " ".join(["kerr"] * 20)}, 413, "too_many_tokens"),
    ({"model": "emb", "input": "x", "dimensions": 64}, 422, "invalid_dimensions"),
    ({"model": "emb", "input": "x", "encoding_format": "int8"}, 422, "invalid_request"),
    ({"model": "emb", "input": ["x"] * 9}, 413, "too_many_inputs"),
    ({"input": "x"}, 422, "invalid_request"),
    ({"model": "nobody", "input": "x"}, 404, "model_not_found"),
    ({"model": "toy", "input": "x"}, 400, "wrong_route"),
]


def test_bad_input_is_a_4xx_naming_it(emb_server: tuple[ServerProcess, dict[str, str], Path]) -> None:
    server, keys, _ = emb_server
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    for body, status, code in BAD:
        r = httpx.post(f"{server.url}/v1/embeddings", json=body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    over = httpx.post(f"{server.url}/v1/embeddings", json=BAD[2][0], headers=headers).json()["error"]
    assert over["limit"] == "max_tokens" and over["max"] == 16 and over["got"] == 22
    with pytest.raises(openai.NotFoundError):
        client(server, keys["admin"]).embeddings.create(model="nobody", input="x")
    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        client(server, keys["admin"]).embeddings.create(model="toy", input="x")
    assert httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": "x"}).status_code == 401


def test_prompt_tokens_spend_the_token_budget(emb_server: tuple[ServerProcess, dict[str, str], Path]) -> None:
    server, keys, _ = emb_server
    c = client(server, keys["frugal"])
    c.embeddings.create(model="emb", input=TEXTS, encoding_format="float")  # 11 of 12 tokens
    with pytest.raises(openai.RateLimitError):
        c.embeddings.create(model="emb", input=TEXTS[0], encoding_format="float")

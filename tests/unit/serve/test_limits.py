"""Size limits on requests: body bytes (declared and streamed), inputs per request, characters per input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
import pytest
from starlette.requests import Request

from miniml.errors import RequestError
from miniml.modelfolder import ModelInfo
from miniml.runtime.loaded import LoadedModel
from miniml.serve.errors import HTTPProblem
from miniml.serve.inference import read_body
from miniml.serve.settings import RequestLimits
from miniml.tasks.classification_serving import ClassificationHandler
from miniml.tasks.serving import normalize_text

LIMITS = RequestLimits(max_body_bytes=100, max_inputs=3, max_chars=10)
handler = ClassificationHandler()


def decode(body: object) -> tuple[list[str], int, int]:
    d = handler.decode_request(orjson.dumps(body), LIMITS)
    return d.items, d.params, d.chars


def problem(body: object) -> HTTPProblem:
    with pytest.raises(HTTPProblem) as err:
        decode(body)
    return err.value


def test_valid_body_is_normalised() -> None:
    items, top_k, chars = decode({"inputs": ["  Hej ", "Cafe\u0301"], "top_k": 2})
    assert items == ["Hej", "Café"] and top_k == 2 and chars == len("  Hej ") + len("Cafe\u0301")
    assert normalize_text("e\u0301") == "\u00e9"


def test_too_many_inputs_and_too_long_input_name_their_limit() -> None:
    err = problem({"inputs": ["a", "b", "c", "d"]})
    assert (err.status, err.code, err.details["limit"], err.details["max"]) == (
        413,
        "too_many_inputs",
        "max_inputs",
        3,
    )
    err = problem({"inputs": ["ok", "x" * 11]})
    assert (err.status, err.code, err.details["limit"], err.details["index"]) == (
        413,
        "input_too_long",
        "max_chars",
        1,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": "not a list"},
        {"inputs": [1, 2]},
        {"inputs": []},
        {"inputs": ["a"], "top_k": 0},
        {"inputs": ["a"], "top_k": "three"},
        {"inputs": ["a"], "extra": True},
        {},
        ["a"],
    ],
)
def test_wrong_shapes_are_422(body: object) -> None:
    err = problem(body)
    assert err.status == 422 and err.code == "invalid_request" and err.details["errors"]


def test_malformed_json_is_422() -> None:
    with pytest.raises(HTTPProblem) as err:
        handler.decode_request(b'{"inputs": ["a"', LIMITS)
    assert err.value.status == 422


def request_with(chunks: Sequence[bytes], content_length: int | None) -> Request:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": headers, "path": "/"}, receive)


@pytest.mark.anyio
async def test_body_limit_checks_declared_and_streamed_size() -> None:
    assert await read_body(request_with([b"x" * 60, b"y" * 40], 100), 100) == b"x" * 60 + b"y" * 40
    with pytest.raises(HTTPProblem) as declared:
        await read_body(request_with([b"x"], 101), 100)
    assert declared.value.status == 413 and declared.value.details["limit"] == "max_body_bytes"
    with pytest.raises(HTTPProblem) as streamed:  # a client that lies about (or omits) Content-Length
        await read_body(request_with([b"x" * 60, b"y" * 60], None), 100)
    assert streamed.value.status == 413


def test_encode_response_gives_label_score_and_top_k() -> None:
    info = ModelInfo(name="m", task="classification", architecture="test", labels=["da", "sv", "nb"])
    model = LoadedModel("m", "/m", 3, "champion", None, info, predictor=None)  # type: ignore[arg-type]
    rows = [np.array([0.1, 0.7, 0.2], dtype=np.float32), np.array([0.5, 0.2, 0.3], dtype=np.float32)]
    body = orjson.loads(handler.encode_response(model, rows, 2))
    assert body["model"] == "m" and body["version"] == 3
    first, second = body["predictions"]
    assert first == {
        "label": "sv",
        "score": 0.7,
        "top_k": [{"label": "sv", "score": 0.7}, {"label": "nb", "score": 0.2}],
    }
    assert second["label"] == "da" and len(second["top_k"]) == 2
    assert len(orjson.loads(handler.encode_response(model, rows, 99))["predictions"][0]["top_k"]) == 3
    assert handler.top_labels(model, rows) == ["sv", "da"]


class NaNPredictor:
    """A classifier whose second input comes out as NaN (an overflow inside a broken model)."""

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = np.full((len(texts), 3), 1 / 3, dtype=np.float32)
        probs[1:2] = np.nan
        return probs


def test_non_finite_scores_fail_the_batch_instead_of_answering_null() -> None:
    info = ModelInfo(name="m", task="classification", architecture="test", labels=["da", "sv", "nb"])
    model = LoadedModel("m", "/m", 3, None, None, info, predictor=NaNPredictor())  # type: ignore[arg-type]
    with pytest.raises(RequestError) as err:
        handler.predict(model, ["a", "b"])
    assert err.value.status == 500 and err.value.code == "non_finite_output"
    assert len(handler.predict(model, ["a"])) == 1  # the batcher reruns each request: the good ones pass

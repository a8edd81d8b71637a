"""The generation server shared by the generation e2e tests (one per session: startup costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tiny_generative as tg
from serve_support import ServerProcess, write_yaml


@pytest.fixture(scope="session")
def gen_server(
    tmp_path_factory: pytest.TempPathFactory, toy_model: Path
) -> Iterator[tuple[ServerProcess, dict]]:
    """tiny-t5 and tiny-gpt2 (trained), endless (never stops by itself) and the toy classifier."""
    from miniml.serve.auth import add_key

    tmp = tmp_path_factory.mktemp("gen_server")
    keys_file = tmp / "keys.yaml"
    keys = {
        "admin": add_key(keys_file, "admin"),
        "metered": add_key(keys_file, "metered", requests="2/minute"),
        "tokens": add_key(keys_file, "tokens", requests="1000/minute", tokens="200/minute"),
    }
    models = [tg.trained_folder("t5"), tg.trained_folder("gpt2"), tg.endless_folder(), toy_model]
    config = write_yaml(
        tmp / "serve.yaml",
        {
            "models": [str(m) for m in models],
            "auth": {"keys_file": "keys.yaml"},
            "limits": {"max_inputs": 8, "max_chars": 2000},
            "generation": {"max_new_tokens": 4096, "guided": {"max_chars": 4000}},
            "batching": {"max_batch_size": 16, "max_wait_ms": 30, "request_timeout_s": 120, "threads": 1},
        },
    )
    server = ServerProcess(["--config", str(config)], tmp).wait_ready(timeout=180)
    yield server, keys
    assert server.terminate() == 0

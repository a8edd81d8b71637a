"""Serve settings: file < env < --set < flags, validated, examples load through the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniml.errors import ConfigError
from miniml.serve.server import curl_line, load_settings, with_demo_key
from miniml.serve.settings import ServeSettings

REPO = Path(__file__).resolve().parents[3]


def test_precedence_file_env_set_flags(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("models: [a]\nserver: {port: 9000}\nbatching: {max_wait_ms: 1, max_batch_size: 8}\n")
    env = {"MINIML_SERVE__BATCHING__MAX_WAIT_MS": "3", "MINIML_SERVE__SERVER__PORT": "9001"}
    s = load_settings(path, models=["b", "c"], port=9003, overrides=["server.port=9002"], environ=env)
    assert s.models == ["b", "c"]  # flags beat the file
    assert s.server.port == 9003  # flag > --set > env > file
    assert s.batching.max_wait_ms == 3 and s.batching.max_batch_size == 8


def test_cache_backend_from_env_and_relative_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "serve.yaml"
    path.parent.mkdir()
    path.write_text("auth: {keys_file: keys.yaml}\ncache: {backend: memory, max_entries: 10}\n")
    env = {"MINIML_SERVE__CACHE__BACKEND": "redis", "MINIML_SERVE__CACHE__URL": "redis://10.0.0.1:6380/1"}
    s = load_settings(path, environ=env)
    assert s.cache.backend == "redis" and s.cache.url.endswith(":6380/1")
    assert s.auth.keys_file == path.parent / "keys.yaml"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["batching.max_batch_size=0"], "max_batch_size"),
        (["cache.backend=memcached"], "cache"),
        (["ratelimit.requests=fast"], "not a rate"),
        (["limits.max_inputs=100", "batching.queue_size=10"], "queue_size"),
        (["bogus=1"], "unknown key"),
        (["cache.semantic={threshold: 0.9}"], "embedder"),
        (["cache.semantic={embedder: m, threshold: 1.5}"], "threshold"),
        (["cache.semantic={embedder: m, url: 'http://x'}"], "url"),
    ],
)
def test_invalid_settings_are_one_line_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(overrides=overrides, environ={})
    assert "\n" not in str(err.value)


def test_demo_key_and_curl_line() -> None:
    settings, key = with_demo_key(ServeSettings(models=["x"]))
    assert [r.name for r in settings.auth.keys] == ["demo"]
    line = curl_line(settings, "nordic-langid", key, "Hej")
    assert f"Authorization: Bearer {key}" in line and "/v1/models/nordic-langid/predict" in line


@pytest.mark.parametrize("path", sorted(REPO.glob("examples/*/serve.yaml")), ids=lambda p: p.parent.name)
def test_example_serve_configs_load(path: Path) -> None:
    settings = load_settings(path, environ={})
    assert settings.models


def test_semantic_cache_defaults() -> None:
    s = load_settings(overrides=["cache.semantic={embedder: models:/paraphrase@champion}"], environ={})
    semantic = s.cache.semantic
    assert semantic is not None and semantic.embedder == "models:/paraphrase@champion"
    assert (semantic.threshold, semantic.guard, semantic.max_entries, semantic.ttl_s) == (
        0.95,
        True,
        10000,
        3600,
    )
    assert semantic.url is None and ServeSettings().cache.semantic is None  # off unless set


def test_a_missing_semantic_embedder_is_one_line(tmp_path: Path) -> None:
    from miniml.serve.semantic import load_embedder
    from miniml.serve.settings import SemanticCacheSettings

    with pytest.raises(ConfigError, match=r"^cache\.semantic\.embedder: no model folder or model URI"):
        load_embedder(SemanticCacheSettings(embedder=str(tmp_path / "nope")))

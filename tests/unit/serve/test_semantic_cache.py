"""SemanticCache with a real (tiny) embedder: scopes, hits, prompts longer than the embedder reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedding_support import make_embedding_folder, make_tiny_encoder
from miniml.serve.metrics import ServeMetrics
from miniml.serve.semantic import SemanticCache
from miniml.serve.settings import SemanticCacheSettings
from miniml.tasks import load_model

pytestmark = pytest.mark.anyio


async def test_lookup_store_and_scopes(tmp_path: Path) -> None:
    folder = make_embedding_folder(tmp_path / "emb", make_tiny_encoder(tmp_path / "enc"), max_tokens=8)
    metrics = ServeMetrics()
    cache = SemanticCache(
        SemanticCacheSettings(embedder=str(folder), threshold=0.99), load_model(folder), metrics
    )
    cache.start()
    try:
        v1, v2 = cache.scope("m@1", "greedy"), cache.scope("m@2", "greedy")
        assert v1 != v2 != cache.scope("m@1", "sampled")
        (probe,) = await cache.lookup("m", [(v1, "who is Ross")])
        assert probe is not None and probe.match.entry is None
        await cache.store([(probe, b"answer")])
        # the tiny encoder lower-cases: the same vector, another exact key
        same, other_version, other_value, too_long = await cache.lookup(
            "m", [(v1, "who is ross"), (v2, "who is ross"), (v1, "who is Lowry"), (v1, "the a " * 6)]
        )
        assert same is not None and same.match.entry is not None and same.match.entry.answer == b"answer"
        assert same.match.similarity > 0.99
        assert other_version is not None and other_version.match.entry is None
        assert other_value is not None and other_value.match.entry is None  # another name, another vector
        assert too_long is None  # 14 tokens > max_tokens 8: never embedded cut short
    finally:
        await cache.close()
    text = metrics.render().decode()
    assert 'miniml_semantic_lookup_duration_seconds_count{model="m"} 4.0' in text

"""SemanticCache with a real (tiny) embedder: scopes, hits, prompts longer than the embedder reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from embedding_support import make_embedding_folder, make_tiny_encoder, pairs_frame
from miniml.modelfolder import read_info
from miniml.optimize.classifier import build
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.outcome import EvalData
from miniml.runtime import resolve
from miniml.runtime.onnx_predictor import OnnxPredictor
from miniml.serve.metrics import ServeMetrics
from miniml.serve.semantic import SemanticCache, load_embedder, split_prompt
from miniml.serve.settings import SemanticCacheSettings
from miniml.tasks import get_task, load_model

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


async def test_an_onnx_embedder_runs_on_its_own_threads(tmp_path: Path) -> None:
    """``threads`` (default 1) sizes the embedder's ONNX session; the loading thread's torch count stays."""
    folder = make_embedding_folder(tmp_path / "emb", make_tiny_encoder(tmp_path / "enc"))
    frame = pairs_frame(range(8))
    info = read_info(folder)
    cfg = OptimizeConfig.model_validate({"onnx": True, "output": str(tmp_path / "out"), "dry_run": True})
    data = EvalData("pairs", frame["input"].tolist(), frame["target"].tolist(), frame)
    onnx_folder, _ = build(str(folder), resolve(folder), info, cfg, data, get_task(info.task).optimize)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        settings = SemanticCacheSettings(embedder=str(onnx_folder))
        assert settings.threads == 1
        embedder = load_embedder(settings)
        assert torch.get_num_threads() == 2
        assert isinstance(embedder.predictor.runtime, OnnxPredictor)
        options = embedder.predictor.runtime.session.get_session_options()
        assert options.intra_op_num_threads == 1
        two = load_embedder(SemanticCacheSettings(embedder=str(onnx_folder), threads=2))
        assert two.predictor.runtime.session.get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)
    cache = SemanticCache(settings, embedder, ServeMetrics())
    cache.start()
    try:
        (probe,) = await cache.lookup("m", [(cache.scope("m@1", "greedy"), "what is a cat")])
        assert probe is not None and probe.vector.shape == (embedder.predictor.dimensions,)
    finally:
        await cache.close()


async def test_embed_pattern_embeds_the_question_and_scopes_by_the_rest(tmp_path: Path) -> None:
    folder = make_embedding_folder(tmp_path / "emb", make_tiny_encoder(tmp_path / "enc"), max_tokens=8)
    settings = SemanticCacheSettings(
        embedder=str(folder), threshold=0.99, embed_pattern="Q: (.*)", scope_pattern="^table: .*"
    )
    cache = SemanticCache(settings, load_model(folder), ServeMetrics())
    cache.start()
    try:
        v1 = cache.scope("m@1", "greedy")
        # the header is longer than the embedder reads: only the question is embedded, so it is cached
        long_header = "table: 1-1\ncolumns: " + "a b c d e f g h i j k l " * 3 + "\nQ: who is Ross\nA:"
        (probe,) = await cache.lookup("m", [(v1, long_header)])
        assert probe is not None and probe.text == "who is Ross" and probe.match.entry is None
        await cache.store([(probe, b"answer")])
        other_columns = "table: 1-1\ncolumns: a b\nQ: who is ross\nA:"
        other_table = "table: 2-2\ncolumns: a b\nQ: who is ross\nA:"
        same, elsewhere = await cache.lookup("m", [(v1, other_columns), (v1, other_table)])
        assert same is not None and same.match.entry is not None and same.match.entry.answer == b"answer"
        assert elsewhere is not None and elsewhere.match.entry is None  # another table, another scope
    finally:
        await cache.close()


def test_split_prompt_without_a_scope_pattern_keeps_the_rest_equal() -> None:
    embed = re.compile("Q: (.*)")
    rest, text = split_prompt("table: 1\nQ: who\nA:", embed, None)
    assert text == "who" and rest == "table: 1\nQ: \x00\nA:"
    assert split_prompt("no question here", embed, None) == ("", "no question here")
    assert split_prompt("x", None, re.compile("^table: .*"))[0] == "\x00unmatched"


@pytest.mark.parametrize("pattern", ["Q: (", "(a)(b)"])
def test_bad_patterns_are_config_errors(pattern: str) -> None:
    with pytest.raises(ValidationError, match=r"regular expression|groups"):
        SemanticCacheSettings(embedder="x", embed_pattern=pattern)

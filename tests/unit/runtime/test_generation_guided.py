"""Guided decoding in the generation loop: request constraints, and a model's own saved constraint."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

import tiny_generative as tg
from miniml.guided.spec import GuidedSpec
from miniml.modelfolder import read_info, write_info
from miniml.runtime.generation import GenerationParams
from miniml.tasks import load_generator
from tiny_generative import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[3]
# Every answer the schema allows fits in SAMPLING's 40 tokens: with only "maximum": 9, "-5555..." (40 tokens
# of a negative number) was valid, cut at the token cap, and no longer parsed.
SCHEMA = {
    "type": "object",
    "properties": {
        "digits": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3}
    },
    "required": ["digits"],
    "additionalProperties": False,
}
SAMPLING = GenerationParams(max_new_tokens=40, temperature=1.0)


def test_a_tiny_lm_writes_valid_json_only_when_guided() -> None:
    generator = load_generator(tg.trained_folder("gpt2"))
    prompts = [p[0] for p in tg.PAIRS[:8]]
    free = generator.generate(prompts, SAMPLING)
    assert not any(_is_valid(t) for t in free), free
    guided = generator.generate(prompts, SAMPLING, guided=GuidedSpec(json_schema=SCHEMA))
    for text in guided:
        jsonschema.validate(json.loads(text), SCHEMA)


def test_guided_rows_share_a_batch_with_free_rows() -> None:
    generator = load_generator(tg.trained_folder("t5"))
    ids = [generator.encode_prompt(p[0]) for p in tg.PAIRS[:3]]
    choice = generator.constraint_for("", GuidedSpec(choice=["yes", "no"]))
    params = [GenerationParams(max_new_tokens=8)] * 3
    results = generator.run(ids, params, constraints=[None, choice, None])
    assert results[1].text in {"yes", "no"} and results[1].finish_reason == "stop"
    assert results[0].text == generator.generate([tg.PAIRS[0][0]], params[0])[0]  # free rows unchanged


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_beam_search_keeps_every_hypothesis_inside_the_grammar(kind: str) -> None:
    generator = load_generator(tg.trained_folder(kind))
    prompts = [p[0] for p in tg.PAIRS[:4]]
    free = generator.generate(prompts, GenerationParams(max_new_tokens=40, num_beams=3))
    assert not all(_is_valid(t) for t in free), free
    beams = GenerationParams(max_new_tokens=40, num_beams=3)
    guided = generator.generate(prompts, beams, guided=GuidedSpec(json_schema=SCHEMA))
    for text in guided:
        jsonschema.validate(json.loads(text), SCHEMA)
    choice = generator.generate(prompts, beams, guided=GuidedSpec(choice=["yes", "no way"]))
    assert set(choice) <= {"yes", "no way"}, choice


def test_guided_and_free_prompts_share_one_beam_search() -> None:
    generator = load_generator(tg.trained_folder("t5"))
    ids = [generator.encode_prompt(p[0]) for p in tg.PAIRS[:3]]
    choice = generator.constraint_for("", GuidedSpec(choice=["yes", "no"]))
    params = [GenerationParams(max_new_tokens=8, num_beams=2)] * 3
    results = generator.run(ids, params, constraints=[None, choice, None])
    assert results[1].text in {"yes", "no"} and results[1].finish_reason == "stop"
    assert results[0].text == generator.generate([tg.PAIRS[0][0]], params[0])[0]  # free rows unchanged


def test_a_saved_constraint_applies_unless_turned_off(tmp_path: Path) -> None:
    folder = shutil.copytree(tg.trained_folder("t5"), tmp_path / "t5-sql")
    constraint = yaml.safe_load((REPO / "examples" / "text2sql" / "train.yaml").read_text())["model"][
        "constraint"
    ]
    info = read_info(folder)
    write_info(
        folder, info.model_copy(update={"preprocessing": {**info.preprocessing, "constraint": constraint}})
    )
    generator = load_generator(folder)
    prompt = "table: t-1\ncolumns: Name, Age\nQ: who? DROP TABLE t\nA:"
    for text in generator.generate([prompt] * 6, SAMPLING, truncate=True):
        assert re.fullmatch(
            r"select ((count|max|min|avg|sum) )?(name|age) from t-1( where .*)?", text.lower()
        )
        # the question's words may be quoted as a value ('drop table t' is a string), never run as SQL
        assert "drop" not in re.sub(r"'[^']*'", "''", text.lower()), text
    free = generator.generate(
        [prompt], GenerationParams(max_new_tokens=8), use_model_constraint=False, truncate=True
    )
    assert not free[0].lower().startswith("select")


def _is_valid(text: str) -> bool:
    """Whether ``text`` is JSON valid against SCHEMA (a free answer such as ``7`` is JSON, by chance)."""
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True

"""The generative serving hooks: cache keys, codec, parameter resolution and caps, mixed-setting batches."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_generative as tg
from miniml.errors import RequestError as HTTPProblem
from miniml.runtime.generation import GenerationParams, GenerationResult
from miniml.runtime.loaded import LoadedModel
from miniml.serve.settings import GenerationLimits
from miniml.tasks import load_generator
from miniml.tasks.generative_serving import GenerationHandler, GenItem, encode_items, resolve_params
from tiny_generative import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    with tg.one_thread():
        generator = load_generator(tg.trained_folder("t5"))
    assert generator.info is not None
    return LoadedModel("tiny-t5", "folder", None, None, Path("."), generator.info, generator)


def params(**values: object) -> GenerationParams:
    return GenerationParams.model_validate(values)


def test_only_greedy_unstreamed_generations_are_cached() -> None:
    handler = GenerationHandler()
    greedy = GenItem("p", [1], params())
    assert handler.cache_key(greedy) is not None
    assert handler.cache_key(GenItem("p", [1], params(temperature=0.7))) is None
    assert handler.cache_key(GenItem("p", [1], params(), stream=True)) is None
    assert handler.cache_key(GenItem("p", [1], params(max_new_tokens=3))) != handler.cache_key(greedy)
    assert not handler.cacheable(GenerationResult("x", 1, 1, "cancelled"))
    result = GenerationResult("select 1", 4, 2, "stop")
    assert handler.codec.loads(handler.codec.dumps(result)) == result


def test_request_settings_override_the_models_defaults_within_the_caps(model: LoadedModel) -> None:
    limits = GenerationLimits(max_new_tokens=16)
    got = resolve_params(
        model,
        limits,
        max_new_tokens=None,
        temperature=None,
        top_p=None,
        num_beams=None,
        stop="x",
        stream=False,
    )
    assert got.max_new_tokens == 16  # the model's default (64) capped by the server
    assert got.stop == ("x",) and got.temperature == 0.0
    with pytest.raises(HTTPProblem) as over:
        resolve_params(
            model,
            limits,
            max_new_tokens=17,
            temperature=None,
            top_p=None,
            num_beams=None,
            stop=None,
            stream=False,
        )
    assert over.value.status == 422 and over.value.code == "max_new_tokens_too_large"
    with pytest.raises(HTTPProblem, match="num_beams: 1"):
        resolve_params(
            model, limits, max_new_tokens=4, temperature=None, top_p=None, num_beams=2, stop=None, stream=True
        )


def test_prompts_over_the_cap_are_413(model: LoadedModel) -> None:
    items = encode_items(model, GenerationLimits(max_prompt_tokens=6), ["one two"], params(), stream=False)
    assert len(items[0].ids) <= 6
    with pytest.raises(HTTPProblem) as too_long:
        encode_items(
            model,
            GenerationLimits(max_prompt_tokens=6),
            ["ok", "one two three four five six"],
            params(),
            stream=False,
        )
    assert too_long.value.status == 413 and too_long.value.details["index"] == 1


def test_a_batch_of_mixed_settings_answers_every_row_in_order(model: LoadedModel) -> None:
    handler = GenerationHandler()
    prompts = [p[0] for p in tg.PAIRS[:4]]
    settings = [
        params(max_new_tokens=8),
        params(max_new_tokens=8, num_beams=2),
        params(max_new_tokens=2),
        params(max_new_tokens=8),
    ]
    items = [GenItem(p, model.predictor.encode_prompt(p), s) for p, s in zip(prompts, settings, strict=True)]
    outputs = handler.predict(model, items)
    alone = [handler.predict(model, [GenItem(i.prompt, i.ids, i.params)])[0] for i in items]
    assert [o.text for o in outputs] == [a.text for a in alone]
    assert outputs[2].completion_tokens <= 2
    assert all(item.generated for item in items)
    assert items[0].first_piece is not None  # noted by the step callback (time to first token)

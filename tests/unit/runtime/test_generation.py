"""Generator: greedy determinism, streaming, stop strings, per-row caps, cancel, prompt caps."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

import tiny_generative as tg
from miniml.errors import MinimlError, ModelError
from miniml.modelfolder import ModelInfo, write_info
from miniml.runtime.generation import GenerationParams, Generator, PromptTooLongError, cut_at_stop, held_back
from miniml.tasks import load_generator
from tiny_generative import one_torch_thread  # noqa: F401

PROMPTS = [p[0] for p in tg.PAIRS[:4]]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["t5", "gpt2"])
def generator(request: pytest.FixtureRequest) -> Generator:
    with tg.one_thread():
        return load_generator(tg.trained_folder(request.param))


def test_cut_at_stop_uses_the_earliest_stop() -> None:
    assert cut_at_stop("a b; c. d", [".", ";"]) == ("a b", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert cut_at_stop("abc", [""]) == ("abc", False)


def test_held_back_counts_a_possible_stop_prefix() -> None:
    assert held_back("select a EN", ["END"]) == 2
    assert held_back("select a", ["END"]) == 0
    assert held_back("x ##", ["###", "#"]) == 2


@pytest.mark.parametrize(
    "bad", [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"num_beams": 0}, {"stop": ["x"] * 9}]
)
def test_params_out_of_range_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GenerationParams.model_validate(bad)


def test_greedy_generation_is_deterministic_and_batch_independent(generator: Generator) -> None:
    params = GenerationParams(max_new_tokens=6)
    batch = generator.generate(PROMPTS, params)
    assert batch == generator.generate(PROMPTS, params)
    alone = [generator.generate([p], params)[0] for p in PROMPTS]
    assert batch == alone  # padding does not change a row's answer
    assert any(batch)


def test_trained_model_answers_its_training_examples(generator: Generator) -> None:
    answers = generator.generate(PROMPTS, GenerationParams(max_new_tokens=8))
    expected = [p[1] for p in tg.PAIRS[:4]]
    assert sum(a.strip() == e for a, e in zip(answers, expected, strict=True)) >= 3, answers


def test_stream_pieces_join_to_the_generated_text(generator: Generator) -> None:
    params = GenerationParams(max_new_tokens=6)
    steps = list(generator.stream(PROMPTS[:2], params))
    assert len(steps) >= 2 and all(len(step) == 2 for step in steps)
    joined = ["".join(step[row] for step in steps) for row in range(2)]
    assert joined == generator.generate(PROMPTS[:2], params)


def test_stop_string_cuts_the_answer(generator: Generator) -> None:
    full = generator.generate(PROMPTS[:1], GenerationParams(max_new_tokens=8))[0]
    assert " " in full.strip()
    stop = full.strip().split(" ")[1]
    result = generator.run(
        [generator.encode_prompt(PROMPTS[0])], [GenerationParams(max_new_tokens=8, stop=(stop,))]
    )
    assert stop not in result[0].text
    assert result[0].finish_reason == "stop"
    assert full.startswith(result[0].text)


def test_rows_keep_their_own_token_caps(generator: Generator) -> None:
    ids = [generator.encode_prompt(p) for p in PROMPTS[:2]]
    short, long = GenerationParams(max_new_tokens=1), GenerationParams(max_new_tokens=3)
    results = generator.run(ids, [short, long])
    assert results[0].completion_tokens == 1 and results[0].finish_reason == "length"
    assert 1 <= results[1].completion_tokens <= 3
    assert results[0].prompt_tokens == len(ids[0])


def test_cancelled_row_stops_while_others_continue(generator: Generator) -> None:
    ids = [generator.encode_prompt(p) for p in PROMPTS[:2]]
    cancel = [threading.Event(), None]
    params = [GenerationParams(max_new_tokens=30, stop=()), GenerationParams(max_new_tokens=3)]
    cancel[0].set()  # already gone before the first step: at most one token is produced
    results = generator.run(ids, params, cancel)
    assert results[0].finish_reason == "cancelled" and results[0].completion_tokens <= 1
    assert results[1].finish_reason in {"stop", "length"}


def test_rows_with_different_sampling_cannot_share_a_batch(generator: Generator) -> None:
    ids = [generator.encode_prompt(p) for p in PROMPTS[:2]]
    with pytest.raises(MinimlError, match="share temperature"):
        generator.run(ids, [GenerationParams(), GenerationParams(temperature=0.7)])


def test_beam_search_generates_and_cannot_stream(generator: Generator) -> None:
    params = GenerationParams(max_new_tokens=6, num_beams=3)
    answers = generator.generate(PROMPTS[:2], params)
    assert len(answers) == 2
    with pytest.raises(MinimlError, match="num_beams"):
        list(generator.stream(PROMPTS[:1], params))


def test_sampling_runs(generator: Generator) -> None:
    answers = generator.generate(PROMPTS[:2], GenerationParams(max_new_tokens=4, temperature=1.0, top_p=0.9))
    assert len(answers) == 2


def test_prompt_over_the_cap_is_refused_or_truncated(generator: Generator) -> None:
    long_prompt = " ".join(["nine"] * 200)
    with pytest.raises(PromptTooLongError, match="at most 32"):
        generator.generate([long_prompt])
    assert len(generator.encode_prompt(long_prompt, truncate=True)) == 32


def test_classification_folder_is_not_a_generator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_info(tmp_path, ModelInfo(name="clf", task="classification", architecture="hf", labels=["a", "b"]))
    with pytest.raises(ModelError, match="classification model and cannot generate"):
        load_generator(tmp_path)


def test_chat_uses_the_template_or_the_last_user_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from miniml.tasks import causal_lm

    base = tg.build("gpt2", tmp_path / "chat-base", chat_template=tg.SIMPLE_CHAT_TEMPLATE)
    settings = tg.settings_for("gpt2", base)
    loaded = causal_lm.load_for_training(settings)
    fmt = causal_lm.make_format(settings, loaded.tokenizer)
    causal_lm.CausalLMTask().write_folder(tmp_path / "chat", loaded, fmt, settings, {"name": "chat"})
    generator = load_generator(tmp_path / "chat")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two"}]
    text = "<s>system: be brief</s><s>user: one two</s><s>assistant: "
    assert (
        generator.chat_prompt_ids(messages)
        == generator.tokenizer(text, add_special_tokens=False)["input_ids"]
    )
    plain = load_generator(tg.trained_folder("gpt2"))
    assert plain.chat_prompt_ids(messages) == plain.encode_prompt("one two")
    with pytest.raises(MinimlError, match="at least one user message"):
        plain.chat_prompt_ids([{"role": "system", "content": "x"}])

"""Task causal_lm: loss on completion tokens only, prompt truncation, chat templates, model checks."""

from __future__ import annotations

import pytest

import tiny_generative as tg
from miniml.errors import ConfigError
from miniml.tasks import causal_lm
from miniml.tasks.causal_lm import IGNORE_INDEX


def _loaded(**extra: object) -> tuple[causal_lm.CausalLMSettings, object]:
    settings = tg.settings_for("gpt2", tg.model_path("gpt2"), **extra)
    return settings, causal_lm.load_for_training(settings)


def test_labels_cover_the_completion_only() -> None:
    settings, loaded = _loaded()
    tok = loaded.tokenizer  # type: ignore[attr-defined]
    fmt = causal_lm.make_format(settings, tok)
    assert not fmt.use_chat_template
    example = fmt.encode_example(tok, "digits: one two", "1 2")
    prompt = [tok.bos_token_id, *tok("digits: one two\n", add_special_tokens=False)["input_ids"]]
    completion = [*tok("1 2", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert example["input_ids"] == prompt + completion
    assert example["labels"] == [IGNORE_INDEX] * len(prompt) + completion
    assert fmt.prompt_ids(tok, "digits: one two") == prompt


def test_long_prompt_keeps_its_start_token_and_its_end() -> None:
    settings, loaded = _loaded(max_input_tokens=5)
    tok = loaded.tokenizer  # type: ignore[attr-defined]
    fmt = causal_lm.make_format(settings, tok)
    ids = fmt.prompt_ids(tok, "one two three four five six seven")
    example = fmt.encode_example(tok, "one two three four five six seven", "7")
    labels = example["labels"]
    kept = example["input_ids"][: labels.count(IGNORE_INDEX)]
    assert kept == [ids[0], *ids[-4:]]


def test_chat_template_wraps_the_prompt_when_the_tokenizer_has_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tg.build("gpt2", tmp_path / "chat", chat_template=tg.SIMPLE_CHAT_TEMPLATE)
    settings = tg.settings_for("gpt2", folder, system_prompt="be brief")
    loaded = causal_lm.load_for_training(settings)
    tok = loaded.tokenizer
    fmt = causal_lm.make_format(settings, tok)
    assert fmt.use_chat_template
    text = "<s>system: be brief</s><s>user: one two</s><s>assistant: "
    assert fmt.prompt_ids(tok, "one two") == tok(text, add_special_tokens=False)["input_ids"]
    never = causal_lm.make_format(tg.settings_for("gpt2", folder, chat_template="never"), tok)
    assert not never.use_chat_template


def test_seq2seq_checkpoint_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"seq2seq model.*task: seq2seq"):
        causal_lm.load_for_training(causal_lm.CausalLMSettings(base=str(tg.model_path("t5"))))


def test_encoder_checkpoint_runs_as_a_decoder() -> None:
    loaded = causal_lm.load_for_training(
        causal_lm.CausalLMSettings(base="sentence-transformers/all-MiniLM-L6-v2")
    )
    assert type(loaded.model).__name__ == "BertLMHeadModel" and loaded.model.config.is_decoder
    assert loaded.model.generation_config.eos_token_id == loaded.tokenizer.sep_token_id
    assert any(name.startswith("cls.predictions") for name in loaded.new_weights)

"""Task seq2seq: settings, example encoding, refusing encoder-only / decoder-only checkpoints, warm start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import tiny_generative as tg
from miniml.errors import ConfigError
from miniml.models.hf import resolve_reference
from miniml.tasks import get_task, seq2seq

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_settings_need_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        seq2seq.Seq2SeqSettings.model_validate({})
    with pytest.raises(ValidationError, match="exactly one"):
        seq2seq.Seq2SeqSettings.model_validate({"base": "t5-small", "warm_start": {"encoder": MINILM}})
    assert seq2seq.Seq2SeqSettings(warm_start=seq2seq.WarmStart(encoder=MINILM)).source() == {
        "warm_start": {
            "encoder": MINILM,
            "decoder": None,
            "decoder_layers": None,
            "cross_attention": "random",
            "lm_head": "checkpoint",
        }
    }


def test_example_labels_are_the_target_plus_end_token_and_inputs_are_capped() -> None:
    settings = tg.settings_for("t5", tg.model_path("t5"), max_input_tokens=4, max_target_tokens=3)
    loaded = seq2seq.load_for_training(settings)
    fmt = seq2seq.make_format(settings)
    tok = loaded.tokenizer
    example = fmt.encode_example(tok, "digits: one two three four", "1 2 3 4")
    assert len(example["input_ids"]) == 4 == len(example["attention_mask"])
    assert example["labels"][-1] == tok.eos_token_id and len(example["labels"]) == 3
    assert example["labels"][:-1] == tok("1 2 3 4", add_special_tokens=False)["input_ids"][:2]
    assert fmt.prompt_ids(tok, "one")[-1] == tok.eos_token_id  # the tokenizer's own special tokens


def test_encoder_only_checkpoint_without_warm_start_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"encoder-only.*model\.warm_start\.encoder"):
        seq2seq.load_for_training(seq2seq.Seq2SeqSettings(base=MINILM))


def test_decoder_only_checkpoint_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"decoder-only.*task: causal_lm"):
        seq2seq.load_for_training(seq2seq.Seq2SeqSettings(base=str(tg.model_path("gpt2"))))


def test_warm_start_builds_an_encoder_decoder_with_the_tokenizers_special_tokens() -> None:
    settings = seq2seq.Seq2SeqSettings(warm_start=seq2seq.WarmStart(encoder=MINILM))
    loaded = seq2seq.load_for_training(settings)
    model, tok = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "EncoderDecoderModel"
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    assert model.generation_config.decoder_start_token_id == tok.cls_token_id
    assert model.generation_config.eos_token_id == tok.sep_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert any("crossattention" in name for name in loaded.new_weights)
    assert not any(name.startswith("encoder.") for name in loaded.new_weights)
    assert seq2seq.describe_base(settings) == f"warm-start:{MINILM}+{MINILM}"


def test_warm_start_can_keep_fewer_decoder_layers() -> None:
    spec = seq2seq.WarmStart(encoder=MINILM, decoder_layers=2)
    loaded = seq2seq.warm_start(spec)
    assert loaded.model.config.decoder.num_hidden_layers == 2
    assert loaded.model.config.encoder.num_hidden_layers == 6
    assert not any(".layer.2." in name for name in loaded.new_weights)
    with pytest.raises(ConfigError, match="decoder_layers is 9 but"):
        seq2seq.warm_start(seq2seq.WarmStart(encoder=MINILM, decoder_layers=9))


def test_warm_start_can_copy_self_attention_into_cross_attention() -> None:
    import torch

    copied = seq2seq.warm_start(seq2seq.WarmStart(encoder=MINILM, cross_attention="self")).model.decoder
    fresh = seq2seq.warm_start(seq2seq.WarmStart(encoder=MINILM)).model.decoder
    for copy, new in zip(copied.bert.encoder.layer, fresh.bert.encoder.layer, strict=True):
        for name, weight in copy.crossattention.state_dict().items():
            assert torch.equal(weight, copy.attention.state_dict()[name])
            assert weight.data_ptr() != copy.attention.state_dict()[name].data_ptr()  # a copy, not tied
        assert not torch.equal(new.crossattention.self.query.weight, new.attention.self.query.weight)


def test_warm_start_can_start_the_new_lm_head_as_the_identity() -> None:
    import torch

    spec = seq2seq.WarmStart(encoder=MINILM, lm_head="identity")
    decoder = seq2seq.warm_start(spec).model.decoder
    dense = decoder.cls.predictions.transform.dense
    assert torch.equal(dense.weight, torch.eye(dense.weight.shape[0])) and not dense.bias.any()
    fresh = seq2seq.warm_start(seq2seq.WarmStart(encoder=MINILM)).model.decoder
    assert not torch.equal(fresh.cls.predictions.transform.dense.weight, dense.weight)
    # the readout is in token space: a hidden state holding a token's embedding reads out as that token
    words = torch.tensor([[2054, 2003, 1996, 4827]])  # "what is the branding"
    hidden = decoder.bert.embeddings.word_embeddings(words)
    assert torch.equal(decoder.cls(hidden).argmax(-1), words)


def test_identity_lm_head_is_refused_where_the_checkpoint_has_a_trained_head(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(resolve_reference(MINILM))
    config = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertForMaskedLM(config).save_pretrained(tmp_path)  # a BERT with its masked-LM head
    tok.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="would overwrite the LM head"):
        seq2seq.warm_start(seq2seq.WarmStart(encoder=str(tmp_path), lm_head="identity"))
    assert seq2seq.warm_start(seq2seq.WarmStart(encoder=str(tmp_path))).model is not None


def test_warm_start_with_lora_trains_the_new_cross_attention_in_full() -> None:
    settings = seq2seq.Seq2SeqSettings.model_validate(
        {"warm_start": {"encoder": MINILM}, "lora": {"r": 2, "target_modules": ["query", "value"]}}
    )
    loaded = seq2seq.load_for_training(settings)
    get_task("seq2seq").prepare_for_training(loaded, settings)
    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert any("crossattention.modules_to_save" in n and "output.dense" in n for n in trainable)
    assert any("lora_A" in n for n in trainable)
    assert not any("encoder.encoder.layer.0.attention.self.key" in n for n in trainable)


def test_missing_model_is_a_clear_model_error() -> None:
    from miniml.errors import ModelError

    with pytest.raises(ModelError, match="cannot load model 'no-such/model-xyz'"):
        seq2seq.load_for_training(seq2seq.Seq2SeqSettings(base="no-such/model-xyz"))

"""Task ``seq2seq``: an encoder reads the input, a decoder writes the target (T5, BART, warm-started pairs).

Examples become tensors here: the input is tokenized with the tokenizer's own special tokens and cut at
``max_input_tokens``; the target becomes ``labels`` (its tokens plus the end token, cut at
``max_target_tokens``), and the loss covers exactly those. Outputs become answers by decoding the generated
tokens without special tokens. An encoder-only checkpoint (BERT, MiniLM) can serve as both halves of an
``EncoderDecoderModel`` (``warm_start``): the decoder gets a causal mask and new cross-attention (random, or a
copy of each layer's self-attention: ``cross_attention: self``), an LM head (the checkpoint's, or for a
sentence encoder without one, random or the identity: ``lm_head: identity``), and the
start / pad / end tokens come from the tokenizer and are saved in ``generation_config.json``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from miniml.errors import ConfigError
from miniml.metrics.text import ROUGE_TYPES
from miniml.models.hf import (
    PretrainedModel,
    end_token_id,
    load_hf_config,
    load_pretrained,
    quiet_transformers,
    start_token_id,
)
from miniml.models.quantization import Quantization
from miniml.tasks.base import OptimizeSupport
from miniml.tasks.generative import GenerativeConfig, GenerativeSettings, GenerativeTask
from miniml.tasks.generative_card import card_text

TASK: Literal["seq2seq"] = "seq2seq"


class WarmStart(BaseModel):
    """Build an encoder-decoder from encoder checkpoints (both halves share the encoder's tokenizer)."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = Field(description="encoder checkpoint: Hugging Face id or folder")
    decoder: str | None = Field(None, description="decoder checkpoint (default: the encoder's)")
    decoder_layers: int | None = Field(
        None, ge=1, le=128, description="keep only the decoder checkpoint's first N layers (faster decoding)"
    )
    cross_attention: Literal["random", "self"] = Field(
        "random",
        description="how the decoder's new cross-attention starts: random, or a copy of each layer's "
        "self-attention (it reads the input the way the checkpoint reads a sentence from the first step)",
    )
    lm_head: Literal["checkpoint", "identity"] = Field(
        "checkpoint",
        description="how the decoder's LM-head transform starts: the checkpoint's (random where it has "
        "none, as sentence encoders), or its dense layer as the identity (a last hidden state reads out "
        "as the token it holds)",
    )


class Seq2SeqSettings(GenerativeSettings):
    """The ``model`` section of a seq2seq train config: a seq2seq checkpoint, or a warm start."""

    base: str | None = Field(
        None, description="seq2seq checkpoint: Hugging Face id (t5, bart, ...) or folder"
    )
    warm_start: WarmStart | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Seq2SeqSettings:
        if (self.base is None) == (self.warm_start is None):
            raise ValueError("set exactly one of model.base (a seq2seq model) or model.warm_start.encoder")
        return self

    def source(self) -> dict[str, Any]:
        """Where the weights come from, as recorded in miniml.json (to rebuild an adapter's base)."""
        if self.warm_start is not None:
            return {"warm_start": self.warm_start.model_dump()}
        return {"base": self.base}


class Seq2SeqFormat(BaseModel):
    """How text becomes token ids for a seq2seq model; saved as ``preprocessing`` in miniml.json."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["seq2seq"] = TASK
    max_input_tokens: int = Field(512, ge=4)
    max_target_tokens: int = Field(128, ge=2)
    source: dict[str, Any] = Field(default_factory=dict)

    padding_side: ClassVar[str] = "right"

    def prompt_ids(self, tokenizer: Any, text: str) -> list[int]:
        """The encoder's input ids for ``text`` (not truncated: callers check the cap)."""
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_example(self, tokenizer: Any, text: str, target: str) -> dict[str, list[int]]:
        """One training example: truncated input ids and ``labels`` = target ids + end token."""
        ids = self.truncate_prompt(self.prompt_ids(tokenizer, text))
        labels = list(tokenizer(target, add_special_tokens=False)["input_ids"])
        labels = [*labels[: self.max_target_tokens - 1], end_token_id(tokenizer)]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    def truncate_prompt(self, ids: list[int]) -> list[int]:
        """Cut an over-long input at the cap (the tokenizer's usual truncation)."""
        return ids[: self.max_input_tokens]

    def chat_ids(self, tokenizer: Any, messages: list[dict[str, str]]) -> list[int] | None:
        return None  # no chat template: a chat is answered from its last user message


def check_seq2seq(ref: str) -> None:
    """Refuse checkpoints that cannot generate as seq2seq, saying what to set instead."""
    from transformers.models.auto import modeling_auto as auto

    config = load_hf_config(ref)
    model_type = getattr(config, "model_type", "")
    if (
        getattr(config, "is_encoder_decoder", False)
        or model_type in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
    ):
        return
    if (
        model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        raise ConfigError(
            f"model {ref!r} ({model_type}) is a decoder-only language model, not a seq2seq model",
            hint="use task: causal_lm for it",
        )
    raise ConfigError(
        f"model {ref!r} ({model_type}) is encoder-only and cannot generate text by itself",
        hint=f"set model.warm_start.encoder: {ref} (and drop model.base) to build an encoder-decoder "
        "from it, or pick a seq2seq model such as t5 or bart",
    )


def warm_start(spec: WarmStart, quantization: Quantization = "none") -> PretrainedModel:
    """An EncoderDecoderModel from encoder checkpoints; decoder cross-attention starts random."""
    from transformers import AutoModel, AutoModelForCausalLM, EncoderDecoderModel

    decoder_ref = spec.decoder or spec.encoder
    encoder = load_pretrained(AutoModel, spec.encoder, quantization)
    decoder_config = load_hf_config(decoder_ref)
    decoder_config.is_decoder = True
    decoder_config.add_cross_attention = True
    if spec.decoder_layers is not None:
        _keep_layers(decoder_config, spec.decoder_layers, decoder_ref)
    decoder = load_pretrained(AutoModelForCausalLM, decoder_ref, quantization, config=decoder_config)
    tokenizer = encoder.tokenizer
    if decoder_config.vocab_size != len(tokenizer):
        raise ConfigError(
            f"warm-start decoder {decoder_ref!r} has {decoder_config.vocab_size} tokens but the encoder's "
            f"tokenizer has {len(tokenizer)}",
            hint="use encoder and decoder checkpoints that share one tokenizer",
        )
    if spec.cross_attention == "self":
        _copy_self_attention(decoder.model, decoder_ref)
    if spec.lm_head == "identity":
        _identity_lm_head(decoder.model, decoder.new_weights, decoder_ref)
    with quiet_transformers():
        model = EncoderDecoderModel(encoder=encoder.model, decoder=decoder.model)
    new = [f"encoder.{k}" for k in encoder.new_weights] + [f"decoder.{k}" for k in decoder.new_weights]
    loaded = PretrainedModel(model, tokenizer, sorted(new))
    set_special_tokens(loaded)
    return loaded


def _copy_self_attention(decoder: Any, ref: str) -> None:
    """Start every layer's cross-attention as a copy of its self-attention (BERT-style layers).

    Rothe et al. (2020) warm-start BERT2BERT with random cross-attention and train for 200k+ steps; on a
    CPU budget of a few hundred steps the random cross-attention barely learns to read the input. Copied
    from self-attention, its queries and keys are the checkpoint's own, so the decoder attends to input
    tokens like the ones it holds (a column name it starts to write, a question word) from the first step.
    """
    import torch

    pairs = [
        (m.crossattention, m.attention)
        for m in decoder.modules()
        if getattr(m, "crossattention", None) is not None and getattr(m, "attention", None) is not None
    ]
    same = all(
        cross.state_dict().keys() == own.state_dict().keys()
        and all(v.shape == own.state_dict()[k].shape for k, v in cross.state_dict().items())
        for cross, own in pairs
    )
    if pairs and same:  # every layer or none: a half-copied decoder would be neither recipe
        with torch.no_grad():
            for cross, own in pairs:
                cross.load_state_dict(own.state_dict())
    else:
        raise ConfigError(
            f"cannot copy self-attention into cross-attention for {ref!r}: its layers have no "
            "`attention` / `crossattention` pair of the same shape",
            hint="set model.warm_start.cross_attention: random",
        )


def _identity_lm_head(decoder: Any, new_weights: list[str], ref: str) -> None:
    """Start the dense layer of a new BERT-style LM-head transform (dense → activation → LayerNorm) as the
    identity; the activation and the new LayerNorm still follow it.

    A sentence encoder (all-MiniLM-L6-v2) ships without its masked-LM head, so the decoder's transform
    starts random and scrambles every hidden state before the (tied) output embeddings. With an identity
    dense layer, the last hidden state reads out as the token it holds (for MiniLM, 55% of a prompt's tokens
    exactly; a token's own embedding reads out as that token), so the decoder starts from a readout in
    token space instead of noise.
    """
    import torch

    dense = next(
        (
            (name, module)
            for name, module in decoder.named_modules()
            if name.endswith(("predictions.transform.dense", "lm_head.dense"))
        ),
        None,
    )
    if dense is None or dense[1].weight.shape[0] != dense[1].weight.shape[1]:
        raise ConfigError(
            f"model.warm_start.lm_head: identity needs a BERT-style LM-head transform; {ref!r} has none",
            hint="set model.warm_start.lm_head: checkpoint",
        )
    name, module = dense
    if f"{name}.weight" not in new_weights:
        raise ConfigError(
            f"model.warm_start.lm_head: identity would overwrite the LM head {ref!r} was trained with",
            hint="set model.warm_start.lm_head: checkpoint (its head is already trained)",
        )
    with torch.no_grad():
        module.weight.copy_(torch.eye(module.weight.shape[0], dtype=module.weight.dtype))
        module.bias.zero_()


def _keep_layers(config: Any, layers: int, ref: str) -> None:
    """Shrink a config to its first ``layers`` layers (from_pretrained then loads just those)."""
    have = getattr(config, "num_hidden_layers", None)
    if have is None:
        raise ConfigError(f"cannot shorten {ref!r}: its config has no num_hidden_layers")
    if layers > have:
        raise ConfigError(
            f"model.warm_start.decoder_layers is {layers} but {ref!r} has {have} layers",
            hint=f"use at most {have}",
        )
    config.num_hidden_layers = layers


def set_special_tokens(loaded: PretrainedModel) -> None:
    """Start / pad / end tokens from the tokenizer, where the model config lacks them."""
    model, tokenizer = loaded.model, loaded.tokenizer
    start = start_token_id(tokenizer)
    if getattr(model.config, "decoder_start_token_id", None) is None:
        model.config.decoder_start_token_id = start if start is not None else tokenizer.pad_token_id
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model.config, "eos_token_id", None) is None:
        model.config.eos_token_id = end_token_id(tokenizer)
    gen = model.generation_config
    gen.decoder_start_token_id = model.config.decoder_start_token_id
    gen.pad_token_id = model.config.pad_token_id
    gen.eos_token_id = model.config.eos_token_id
    gen.bos_token_id = None  # the decoder start token plays that part


def load_base(source: dict[str, Any], quantization: Quantization = "none") -> PretrainedModel:
    """Load the untrained model a ``source`` record (see ``Seq2SeqSettings.source``) describes."""
    from transformers import AutoModelForSeq2SeqLM

    if source.get("warm_start"):
        return warm_start(WarmStart.model_validate(source["warm_start"]), quantization)
    ref = str(source.get("base") or "")
    check_seq2seq(ref)
    loaded = load_pretrained(AutoModelForSeq2SeqLM, ref, quantization)
    set_special_tokens(loaded)
    return loaded


def load_for_training(settings: Seq2SeqSettings) -> PretrainedModel:
    """The model and tokenizer a seq2seq train config asks for (quantization falls back on CPU)."""
    return load_base(settings.source(), settings.quantization)


def make_format(settings: Seq2SeqSettings, tokenizer: Any = None) -> Seq2SeqFormat:
    """The format saved with the model (the tokenizer plays no part for seq2seq)."""
    return Seq2SeqFormat(
        max_input_tokens=settings.max_input_tokens,
        max_target_tokens=settings.max_target_tokens,
        source=settings.source(),
    )


def auto_class() -> Any:
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM


def describe_base(settings: Seq2SeqSettings) -> str:
    """The base model as recorded in the registry: the checkpoint, or ``warm-start:ENC+DEC``."""
    if settings.warm_start is not None:
        spec = settings.warm_start
        return f"warm-start:{spec.encoder}+{spec.decoder or spec.encoder}"
    return str(settings.base)


class Seq2SeqConfig(GenerativeConfig):
    """``task: seq2seq``: a seq2seq checkpoint or a warm-started encoder-decoder."""

    task: Literal["seq2seq"] = "seq2seq"
    model: Seq2SeqSettings


class Seq2SeqTask(GenerativeTask):
    """Task ``seq2seq`` (see the module docstring)."""

    name = TASK
    config = Seq2SeqConfig
    card = card_text("Text-to-text generation (encoder-decoder)", "text2text-generation")
    format_cls = Seq2SeqFormat
    metric_names = ("exact_match", "token_f1", *ROUGE_TYPES)
    peft_task = "SEQ_2_SEQ_LM"
    optimize = OptimizeSupport(
        family="generation",
        int8=True,
        prune_methods=("global_unstructured",),
        quality_metric="rougeL",
        refused_hint="--int8 (PyTorch dynamic int8) and --prune work on seq2seq/causal_lm models",
    )

    def auto_class(self) -> Any:
        return auto_class()

    def load_base(self, source: dict[str, Any], quantization: Quantization = "none") -> PretrainedModel:
        return load_base(source, quantization)

    def make_format(self, settings: Any, tokenizer: Any) -> Seq2SeqFormat:
        return make_format(settings, tokenizer)

    def describe_base(self, settings: Any) -> str:
        return describe_base(settings)

"""Task ``causal_lm``: one decoder continues a prompt (GPT-2, Llama, ...; or an encoder run as a decoder).

Examples become tensors here: the prompt is the input followed by ``separator`` — or, when the tokenizer has a
chat template, the input as a user turn with the assistant's turn opened — and the completion is the target
plus the end token. ``labels`` are -100 over the prompt, so the loss covers completion tokens only. A prompt
longer than ``max_input_tokens`` keeps its end (where the question usually is). Outputs become answers by
decoding only the tokens generated after the prompt.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import ConfigError
from miniml.models.hf import PretrainedModel, end_token_id, load_hf_config, load_pretrained, start_token_id
from miniml.models.quantization import Quantization
from miniml.tasks.base import OptimizeSupport
from miniml.tasks.generative import GenerativeConfig, GenerativeSettings, GenerativeTask
from miniml.tasks.generative_card import card_text

TASK: Literal["causal_lm"] = "causal_lm"
IGNORE_INDEX = -100  # label value the loss skips (transformers' convention)


class CausalLMSettings(GenerativeSettings):
    """The ``model`` section of a causal_lm train config."""

    base: str = Field(description="causal LM checkpoint: Hugging Face id or folder")
    separator: str = Field("\n", description="text between prompt and completion (no chat template)")
    chat_template: Literal["auto", "never"] = Field(
        "auto", description="auto: wrap prompts in the tokenizer's chat template when it has one"
    )
    system_prompt: str | None = Field(None, description="system turn for chat templates")

    def source(self) -> dict[str, Any]:
        return {"base": self.base}


class CausalLMFormat(BaseModel):
    """How text becomes token ids for a causal LM; saved as ``preprocessing`` in miniml.json."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["causal_lm"] = TASK
    max_input_tokens: int = Field(512, ge=4)
    max_target_tokens: int = Field(128, ge=2)
    separator: str = "\n"
    use_chat_template: bool = False
    system_prompt: str | None = None
    source: dict[str, Any] = Field(default_factory=dict)

    padding_side: ClassVar[str] = "left"

    def messages(self, text: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": text}]

    def chat_prompt_ids(self, tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
        """Ids of a whole conversation with the assistant's turn opened (needs a chat template)."""
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_ids(self, tokenizer: Any, messages: list[dict[str, str]]) -> list[int] | None:
        """A conversation through the chat template; None when the model has none (or it is off)."""
        return self.chat_prompt_ids(tokenizer, messages) if self.use_chat_template else None

    def prompt_ids(self, tokenizer: Any, text: str) -> list[int]:
        """The model's input ids for ``text`` (not truncated: callers check the cap)."""
        if self.use_chat_template:
            return self.chat_prompt_ids(tokenizer, self.messages(text))
        start = start_token_id(tokenizer)
        ids = list(tokenizer(text + self.separator, add_special_tokens=False)["input_ids"])
        return ([start] if start is not None else []) + ids

    def truncate_prompt(self, ids: list[int]) -> list[int]:
        """Keep the first token (the start token) and the end of an over-long prompt."""
        if len(ids) <= self.max_input_tokens:
            return ids
        return ids[:1] + ids[len(ids) - self.max_input_tokens + 1 :]

    def encode_example(self, tokenizer: Any, text: str, target: str) -> dict[str, list[int]]:
        """One training example: prompt + completion ids, labels masked to the completion."""
        prompt = self.truncate_prompt(self.prompt_ids(tokenizer, text))
        completion = list(tokenizer(target, add_special_tokens=False)["input_ids"])
        completion = [*completion[: self.max_target_tokens - 1], end_token_id(tokenizer)]
        ids = prompt + completion
        return {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "labels": [IGNORE_INDEX] * len(prompt) + completion,
        }


def check_causal_lm(ref: str) -> Any:
    """The checkpoint's config; a ConfigError when it has no causal-LM head."""
    from transformers.models.auto import modeling_auto as auto

    config = load_hf_config(ref)
    model_type = getattr(config, "model_type", "")
    if model_type not in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        kind = "a seq2seq model" if getattr(config, "is_encoder_decoder", False) else "not a causal LM"
        raise ConfigError(
            f"model {ref!r} ({model_type}) is {kind}",
            hint="use task: seq2seq for encoder-decoder models, or pick a causal LM such as gpt2",
        )
    if getattr(config, "is_decoder", None) is False:
        config.is_decoder = True  # encoder checkpoints (BERT) run as decoders need the causal mask
    return config


def load_base(source: dict[str, Any], quantization: Quantization = "none") -> PretrainedModel:
    """Load the untrained causal LM a ``source`` record names."""
    from transformers import AutoModelForCausalLM

    ref = str(source.get("base") or "")
    config = check_causal_lm(ref)
    loaded = load_pretrained(AutoModelForCausalLM, ref, quantization, config=config)
    tokenizer, model = loaded.tokenizer, loaded.model
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = model.generation_config
    gen.pad_token_id = tokenizer.pad_token_id
    gen.eos_token_id = end_token_id(tokenizer)
    return loaded


def load_for_training(settings: CausalLMSettings) -> PretrainedModel:
    """The model and tokenizer a causal_lm train config asks for (quantization falls back on CPU)."""
    return load_base(settings.source(), settings.quantization)


def make_format(settings: CausalLMSettings, tokenizer: Any) -> CausalLMFormat:
    """The format for this tokenizer: chat template used when it has one and the config allows it."""
    use_chat = settings.chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))
    return CausalLMFormat(
        max_input_tokens=settings.max_input_tokens,
        max_target_tokens=settings.max_target_tokens,
        separator=settings.separator,
        use_chat_template=use_chat,
        system_prompt=settings.system_prompt,
        source=settings.source(),
    )


def auto_class() -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


def describe_base(settings: CausalLMSettings) -> str:
    return settings.base


class CausalLMConfig(GenerativeConfig):
    """``task: causal_lm``: a decoder trained on prompt → completion, loss on the completion."""

    task: Literal["causal_lm"] = "causal_lm"
    model: CausalLMSettings


class CausalLMTask(GenerativeTask):
    """Task ``causal_lm`` (see the module docstring)."""

    name = TASK
    config = CausalLMConfig
    card = card_text("Text generation (decoder-only language model)", "text-generation")
    format_cls = CausalLMFormat
    metric_names = ("exact_match", "token_f1", "perplexity")
    peft_task = "CAUSAL_LM"
    optimize = OptimizeSupport(
        family="generation",
        int8=True,
        prune_methods=("global_unstructured",),
        quality_metric="token_f1",
        refused_hint="--int8 (PyTorch dynamic int8) and --prune work on seq2seq/causal_lm models",
    )

    def auto_class(self) -> Any:
        return auto_class()

    def load_base(self, source: dict[str, Any], quantization: Quantization = "none") -> PretrainedModel:
        return load_base(source, quantization)

    def make_format(self, settings: Any, tokenizer: Any) -> CausalLMFormat:
        return make_format(settings, tokenizer)

    def describe_base(self, settings: Any) -> str:
        return describe_base(settings)

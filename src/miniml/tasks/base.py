"""The Task protocol: everything that differs between tasks lives in one object per task.

Training, evaluation, batch prediction, optimization, the pipeline and the server are shared; they hold a
:class:`Task` (``miniml.tasks.get_task(name)``) and ask it, never compare task names. A task owns:

- its train config schema (``config``: a :class:`TrainConfig` subclass whose ``task`` is a literal — the
  train config is the union of these, picked by ``task``), its labels and its validation metrics;
- how examples become tensors and batches, and how its model is built: :meth:`Task.recipe` gives the shared
  training session a :class:`TrainingRecipe` (model, examples, collator, metric and loss hooks, and how
  the trained model is written as a model folder);
- how a model folder loads for inference (:meth:`Task.load`, through the runtime table of
  :mod:`miniml.runtime.table`);
- how outputs become answers, in one shape for ``miniml predict`` and HTTP (:meth:`Task.predict`), its
  metrics, scoring and report (:meth:`Task.evaluate` → :class:`Evaluation`);
- what ``miniml optimize`` can do with it (:class:`OptimizeSupport`), and whether model monitoring
  covers it (:attr:`Task.monitored`);
- what its models' cards say about it (``card``: a :class:`miniml.modelcard.CardText`);
- its serving hooks (:meth:`Task.handler` → :class:`ServingHooks`): request → items → outputs → response;
- optionally, how a checkpoint becomes a model folder without training (:class:`ModelImporter`).

Adding a task is one module: a class implementing this protocol, registered with
``miniml.tasks.register_task`` (the built-in ones are listed in ``miniml.tasks.registry``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import Field, model_validator

from miniml.compute import BackendConfig
from miniml.config import StepConfig
from miniml.modelcard import CardText
from miniml.modelfolder import ModelInfo

if TYPE_CHECKING:
    import pandas as pd

    from miniml.data.dataset import Dataset
    from miniml.runtime.loaded import LoadedModel

Scheduler = Literal[
    "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
]


class TrainConfig(StepConfig):
    """What ``miniml train CONFIG.yaml`` reads: the keys every task shares; a task adds ``model`` and more.

    The task's own schema (``Task.config``) is picked by ``task``; ``miniml.train.load_train_config`` loads
    it.
    """

    env_section: ClassVar[str] = "train"

    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="registry name")
    dataset: str = Field(
        min_length=1,
        description="prepared dataset: NAME, NAME/FINGERPRINT, a folder or s3://BUCKET/PREFIX/NAME/FINGERPRINT",
    )
    task: str = Field("classification", description="classification, seq2seq, causal_lm (miniml.tasks)")
    model: Any = Field(description="the architecture: the task's own model settings")

    # optimization
    epochs: float = Field(3.0, gt=0, description="passes over the training split")
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many optimizer steps (overrides epochs)"
    )
    batch_size: int = Field(32, ge=1, le=65536)
    eval_batch_size: int = Field(128, ge=1, le=65536)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    optimizer: Literal["adamw", "sgd", "adagrad"] = "adamw"
    learning_rate: float = Field(5e-5, gt=0, le=10)
    weight_decay: float = Field(0.01, ge=0, le=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps with linear LR warm-up")
    lr_scheduler: Scheduler = "linear"
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping (0: off)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    # evaluation, checkpoints, early stopping
    eval_steps: int | None = Field(None, ge=1, description="validate every N steps (None: every epoch)")
    checkpoint_steps: int | None = Field(None, ge=1, description="checkpoint every N steps (None: with eval)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (the best is always kept)")
    metric_for_best: str = Field("macro_f1", description="validation metric that picks the best checkpoint")
    early_stopping_patience: int | None = Field(3, ge=1, description="evaluations without improvement")
    logging_steps: int = Field(20, ge=1)

    # batching
    group_by_length: bool = Field(True, description="batch examples of similar length together")
    pad_to_max: bool = Field(False, description="pad every batch to max_length instead of its longest")
    max_train_examples: int | None = Field(None, ge=1, description="use a seeded sample of the train split")

    # runtime
    seed: int = 42
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16/fp16 on GPU only"
    )
    threads: int | None = Field(None, ge=1, le=1024, description="torch intra-op threads")
    dataloader_workers: int = Field(0, ge=0, le=64)

    # tracking and registry
    experiment: str | None = Field(None, description="MLflow experiment (default: model_name)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: embedded store)")
    register_model: bool = Field(True, description="register the model version after a successful run")
    tags: dict[str, str] = Field(default_factory=dict)

    # where it runs (``--backend ray``; ``miniml.compute``)
    backend: BackendConfig = Field(default_factory=lambda: BackendConfig.model_validate({}))

    @model_validator(mode="before")
    @classmethod
    def _a_task_schema(cls, data: Any) -> Any:
        if cls is TrainConfig:
            raise ValueError(
                "TrainConfig holds the keys every task shares: load a config with "
                "miniml.train.load_train_config or train_config, so that its task picks the schema"
            )
        return data

    @model_validator(mode="after")
    def _check_intervals(self) -> TrainConfig:
        if self.eval_steps and self.checkpoint_steps and self.checkpoint_steps % self.eval_steps:
            raise ValueError(
                "checkpoint_steps must be a multiple of eval_steps (the best one is picked at evaluations)"
            )
        return self

    @property
    def eval_interval(self) -> int | None:
        """Steps between validations (None: once per epoch)."""
        return self.eval_steps or self.checkpoint_steps

    @property
    def checkpoint_interval(self) -> int | None:
        """Steps between checkpoints (None: once per epoch)."""
        return self.checkpoint_steps or self.eval_steps

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model_name


@dataclass
class TrainingContext:
    """What the training session hands a task's :meth:`Task.recipe`."""

    config: Any  # the task's TrainConfig subclass
    dataset: Dataset
    frames: Mapping[str, pd.DataFrame]  # train / validation / test splits
    labels: list[str]  # the task's label set (empty for free-text targets)
    work_dir: Path  # the run folder: checkpoints, and what a resume must find again
    resume: bool
    preprocessing: dict[str, Any]  # what ``remember`` stored for this run (reloaded on resume)
    remember: Callable[[dict[str, Any]], None]  # keep the preprocessing in the run state
    train_frame: pd.DataFrame  # the training rows (``max_train_examples`` applied)


class TrainingRecipe(Protocol):
    """What the shared training session and ``make_trainer`` need from a task, for one run."""

    model: Any  # the nn.Module the Trainer trains (replaced by the best checkpoint's when training ends)

    @property
    def train_examples(self) -> Sequence[dict[str, Any]]:
        """Per-example features (with ``input_ids``, so length grouping can read them, and ``labels``)."""
        ...

    @property
    def eval_examples(self) -> Sequence[dict[str, Any]]: ...

    def encode(self, frame: pd.DataFrame) -> Sequence[dict[str, Any]]:
        """Training rows (``input``, ``target``) → per-example features: what a cluster worker does with the
        rows of its data shard (``train_examples`` is ``encode`` of the whole, augmented training frame)."""
        ...

    @property
    def compute_metrics(self) -> Callable[[Any], dict[str, float]] | None:
        """Validation metrics from a Trainer ``EvalPrediction`` (None: the loss only)."""
        ...

    @property
    def compute_loss(self) -> Callable[..., Any] | None:
        """A Trainer ``compute_loss_func`` (None: the model's own loss)."""
        ...

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Per-example features → one batch of tensors (dynamic padding)."""
        ...

    def train_context(self) -> AbstractContextManager[Any]:
        """A context the Trainer runs in (e.g. to silence a known library warning)."""
        ...

    def save(self, folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        """Write the trained model into ``folder``; ``common`` holds the ``miniml.json`` fields every task
        fills the same way (name, dataset, lineage, miniml_version). Returns what ``miniml.json`` says."""
        ...


class Evaluation(Protocol):
    """A model's scores on one split, and how to write them as report files."""

    @property
    def metrics(self) -> dict[str, float]:
        """Flat figures: ``accuracy``, ``macro_f1``, ``f1/<label>``, ``exact_match``, ``rougeL``, ..."""
        ...

    def write(
        self, out_dir: Path, context: Mapping[str, Any], history: Sequence[dict[str, Any]] | None = None
    ) -> Path:
        """``metrics.json``, ``report.md`` (+ plots; ``curves.png`` when ``history`` is given)."""
        ...


@dataclass(frozen=True)
class OptimizeSupport:
    """What ``miniml optimize`` can do with a task's models; anything else is refused before any work.

    ``family`` names how the optimizer handles the weights: ``probabilities`` (a featurizer + module that
    outputs class probabilities: ONNX export, fusion, ONNX or PyTorch int8, pruning, fine-tuning) or
    ``generation`` (a transformers model that generates: PyTorch int8 and pruning). None: not optimizable.
    An embedding model is in the first family with ``outputs="vectors"``: the same module and graph steps,
    its raw output compared instead of probabilities.
    """

    family: Literal["probabilities", "generation"] | None = None
    onnx: bool = False
    int8: bool = False
    calibration: bool = False  # static int8 calibrated on a dataset split (ONNX)
    prune_methods: tuple[str, ...] = ()
    finetune: bool = False  # short training after pruning
    quality_metric: str = "accuracy"  # what the quality gate compares (higher is better)
    # what the module's output is, for parity checks: class scores (compared as probabilities) or vectors
    # (embeddings, compared as they are); quality then comes from the task's own evaluation
    outputs: Literal["scores", "vectors"] = "scores"
    refused_hint: str = ""  # what to use instead, in refusal messages


class ServingHooks(Protocol):
    """A task's serving hooks (after LitServe's ``decode_request / predict / encode_response``).

    The server owns queues, batching, caching, access control, limits and metrics once for every task; the
    hooks only turn a request body into per-input items, items into outputs on the worker thread, and
    outputs into a response body. They raise :class:`miniml.errors.RequestError` for a bad request.
    """

    route: ClassVar[str]  # the resource answering it: POST /v1/models/{name}/{route}
    codec: Any  # dumps(output) -> bytes / loads(bytes) -> output, for a shared cache

    def decode_request(self, body: bytes, limits: Any) -> Any: ...

    def cache_key(self, item: Any) -> str | None: ...

    def predict(self, model: LoadedModel, items: list[Any]) -> Sequence[Any]: ...

    def encode_response(self, model: LoadedModel, outputs: list[Any], params: Any) -> bytes: ...

    def top_labels(self, model: LoadedModel, outputs: list[Any]) -> list[str]: ...

    def warm_up(self, model: LoadedModel) -> None: ...


class Task(Protocol):
    """One task: see the module docstring. Implementations are stateless; one instance per task."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> type[TrainConfig]:
        """The train config schema (its ``task`` is a literal: the train config's union picks it)."""
        ...

    @property
    def optimize(self) -> OptimizeSupport: ...

    @property
    def card(self) -> CardText:
        """What its models' cards say about the task (``README.md``, :mod:`miniml.modelcard`)."""
        ...

    @property
    def predict_batch_cap(self) -> int | None:
        """The most inputs ``miniml predict`` hands :meth:`predict` at once (None: any number)."""
        ...

    @property
    def monitored(self) -> bool:
        """Whether model monitoring covers it (:mod:`miniml.monitor`): a reference profile written at
        training, drift windows, feedback and online quality, canary and shadow rollouts. It needs class
        probabilities, so the classification task only (generated text has no window yet)."""
        ...

    # ---------------------------------------------------------------- training
    def labels(self, config: Any, frames: Mapping[str, pd.DataFrame]) -> list[str]:
        """The label set training uses (checked against the model's own); [] for free-text targets."""
        ...

    def check_config(self, config: Any, labels: Sequence[str]) -> None:
        """Refuse, before any training, what this task cannot do (e.g. an unknown ``metric_for_best``)."""
        ...

    def recipe(self, context: TrainingContext) -> TrainingRecipe:
        """Build the model, its examples and hooks for one training run."""
        ...

    def augment(self, config: Any, frame: pd.DataFrame, *, seed: int | None = None) -> pd.DataFrame:
        """The rows training actually sees (e.g. plus short crops); the identity for most tasks. A cluster
        backend calls it on each block of the training data with a seed of its own."""
        ...

    def test_options(self, config: Any) -> EvaluateOptions:
        """How training scores the test split with the model folder it just wrote."""
        ...

    def describe(self, config: Any) -> dict[str, str]:
        """Run tags: what model was trained (``miniml.model_kind``)."""
        ...

    # ---------------------------------------------------------------- inference
    def load(self, folder: Path, info: ModelInfo, *, device: str | None, threads: int | None) -> Any:
        """The runtime object that runs ``folder`` (a predictor, a generator, ...)."""
        ...

    def evaluate(self, model: LoadedModel, frame: pd.DataFrame, options: EvaluateOptions) -> Evaluation:
        """Score ``model`` on the rows of ``frame`` (columns ``input``, ``target``)."""
        ...

    def predict(
        self, model: LoadedModel, texts: list[str], *, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """One answer per text, in the shape ``miniml predict`` writes per line."""
        ...

    # ---------------------------------------------------------------- serving
    def handler(self, batching: Any) -> ServingHooks:
        """The serving hooks (``batching``: the server's batching settings)."""
        ...

    def serve_workers(self, requested: int) -> int:
        """How many batcher workers (and model replicas) to run for ``requested``."""
        ...


class ModelImporter(Protocol):
    """A task that also packages a checkpoint as a model folder without training (``miniml models import``):
    e.g. an untrained encoder as the baseline a fine-tuned one must beat. Optional: tasks without it are
    refused with one line (:func:`miniml.tasks.registry.importer`)."""

    def import_model(self, settings: Mapping[str, Any], folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        """Write ``folder`` from ``settings`` (the task's ``model:`` keys); ``common`` as for ``save``."""
        ...


@dataclass(frozen=True)
class EvaluateOptions:
    """How a split is scored: generation batch size, rows kept, sample predictions, a progress callback."""

    batch_size: int = 16
    limit: int | None = None
    samples: int = 10
    progress: Callable[[int], None] | None = field(default=None, compare=False)
    source: str = "the split"  # how messages name the rows (``test split of nordic-langid``)
    constrained: bool = True  # generative models: answer under the model's own constraint, if it has one

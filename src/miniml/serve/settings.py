"""Settings of ``miniml serve``: one validated schema, file < environment ``MINIML_SERVE__...`` < flags.

Loaded with the helpers of :mod:`miniml.config` like every other step (so
``MINIML_SERVE__BATCHING__MAX_WAIT_MS=5`` and ``--set batching.max_wait_ms=5`` work as for training), then
handed to :func:`miniml.serve.app.create_app`. Nothing is read from the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from miniml.compute import BackendConfig
from miniml.config import StepConfig
from miniml.guided.compiler import GuidedLimits
from miniml.monitor.settings import MonitorSettings, RoutingSettings


def _check_rate(value: str) -> str:
    """Validate a budget in the ``limits`` notation by parsing it with that library."""
    import limits

    try:
        limits.parse(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate; write e.g. '100/second' or '1000000 per minute'"
        ) from None
    return value


def _check_pattern(value: str | None) -> str | None:
    """A regular expression with at most one capture group (the part it selects)."""
    import re

    if value is None:
        return None
    try:
        compiled = re.compile(value)
    except re.error as err:
        raise ValueError(f"{value!r} is not a regular expression: {err}") from None
    if compiled.groups > 1:
        raise ValueError(f"{value!r} has {compiled.groups} groups; give at most one (the part to select)")
    return value


PromptPattern = Annotated[str | None, AfterValidator(_check_pattern)]

RateString = Annotated[
    str,
    AfterValidator(_check_rate),
    Field(description="limits notation, e.g. '100/second', '1000000 per minute'"),
]


class ServerSettings(StepConfig):
    """The HTTP listener (one uvicorn worker: batching needs every request in one process)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    graceful_timeout_s: float = Field(default=30.0, gt=0, description="max time to drain in-flight requests")
    keep_alive_s: float = Field(default=5.0, gt=0, description="idle time between requests on a connection")
    backlog: int = Field(default=2048, ge=1, description="kernel accept queue (capped by net.core.somaxconn)")
    limit_concurrency: int | None = Field(
        default=1024, ge=1, description="open connections; beyond: 503 + Retry-After (None: no cap)"
    )
    max_header_bytes: int = Field(
        default=16384, ge=1024, le=1_048_576, description="request line + headers; beyond: 431"
    )
    max_headers: int = Field(default=100, ge=8, le=10_000, description="header fields; beyond: 431")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="time to receive a request's headers (from connect / first byte): 408"
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="time to receive a request's body after its headers: 408"
    )
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto", description="event loop; auto: chosen by measurement under overload (see server.py)"
    )
    docs: bool = Field(default=True, description="serve OpenAPI at /docs and /openapi.json")
    ui: bool = Field(default=True, description="serve the web console at /ui (it calls the API with a key)")
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's OpenTelemetry spans/metrics to the globally configured providers",
    )


class BatchingSettings(StepConfig):
    """Dynamic batching: one queue and one inference thread per model."""

    max_batch_size: int = Field(
        default=64, ge=1, le=8192, description="max inputs merged into one forward pass"
    )
    max_wait_ms: float = Field(
        default=2.0, ge=0, le=60_000, description="max time the oldest queued input waits for a batch to fill"
    )
    queue_size: int = Field(default=4096, ge=1, description="max inputs waiting per model; beyond it: 503")
    request_timeout_s: float = Field(
        default=10.0, gt=0, description="max time a request waits for its result: 504"
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch threads per model worker; default: usable cores // number of models",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="classifier replicas per model, each on its own worker thread with threads // workers "
        "threads: for small models on CPU, single-thread replicas can beat one model on all cores",
    )
    continuous: bool = Field(
        default=True,
        description="generative models: continuous batching (requests join and leave the running batch "
        "at every decoding step); false: the static loop (one model.generate per batch)",
    )
    micro_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="run each batch as length-sorted chunks of this many inputs (transformers on CPU: less "
        "padding); None: by runtime for models that pad (ONNX 4, torch 16), else one pass per batch",
    )


class SemanticCacheSettings(StepConfig):
    """The semantic cache of generation routes (:mod:`miniml.serve.semantic`): on an exact-cache miss, the
    answer of the nearest earlier prompt (same model version, same settings) when similar enough."""

    embedder: str = Field(
        min_length=1, description="embedding model URI (models:/NAME@ALIAS, models:/NAME/VERSION, folder)"
    )
    threshold: float = Field(
        default=0.95, gt=0, le=1, description="cosine similarity a cached prompt needs to answer"
    )
    guard: bool = Field(
        default=True, description="answer only when numbers, quoted strings and names agree (semantic_guard)"
    )
    max_entries: int = Field(default=10_000, ge=1, description="prompts kept (LRU), all models together")
    ttl_s: float = Field(default=3600.0, gt=0, description="time to live of an entry (memory and redis)")
    url: str | None = Field(
        default=None, pattern=r"^rediss?://", description="share entries with replicas through this Redis"
    )
    prefix: str = Field(default="miniml:semantic", min_length=1, description="redis: key prefix")
    sync_s: float = Field(
        default=0.5, gt=0, le=60, description="redis: pull other replicas' entries this often"
    )
    timeout_s: float = Field(default=0.25, gt=0, description="redis: a slower answer is skipped")
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="the embedder's threads: one prompt at a time is fastest on one (the model has the rest)",
    )
    embed_pattern: PromptPattern = Field(
        default=None,
        description="regex: embed (and guard) only what it selects (its group, else its match), e.g. "
        "'Q: (.*)' for the question of a text2sql prompt; a prompt it misses is embedded whole",
    )
    scope_pattern: PromptPattern = Field(
        default=None,
        description="regex: what it selects must be equal for a hit (e.g. '^table: .*' for the table id); "
        "default with embed_pattern: everything outside the embedded part",
    )


class CacheSettings(StepConfig):
    """Response cache. One flat section (not a union per backend) so that switching the backend from the
    environment or ``--set`` keeps working when the file also sets another backend's keys."""

    backend: Literal["memory", "redis", "none"] = "memory"
    ttl_s: float = Field(default=3600.0, gt=0, description="time to live of an entry (memory and redis)")
    max_entries: int = Field(default=100_000, ge=1, description="memory: LRU size")
    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^rediss?://", description="redis: server")
    prefix: str = Field(default="miniml:cache", min_length=1, description="redis: key prefix")
    timeout_s: float = Field(default=0.25, gt=0, description="redis: a slower answer counts as a miss")
    semantic: SemanticCacheSettings | None = Field(
        default=None, description="semantic cache for generation routes (off unless set)"
    )


class ApiKeyRecord(BaseModel):
    """One API key as stored: its sha256, never the key itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the key")
    models: list[str] = Field(default_factory=lambda: ["*"], description="model names, or '*' for all")
    requests: RateString | None = Field(
        default=None, description="request budget, overrides ratelimit.requests"
    )
    chars: RateString | None = Field(
        default=None, description="input-character budget, overrides ratelimit.chars"
    )
    tokens: RateString | None = Field(
        default=None, description="generation token budget (prompt + generated), overrides ratelimit.tokens"
    )
    admin: bool | None = Field(
        default=None, description="true: may send feedback on any key's requests (unset: written nowhere)"
    )

    def allows(self, model: str) -> bool:
        """Whether this key may call ``model``."""
        return "*" in self.models or model in self.models


class AuthSettings(StepConfig):
    """API keys: from ``keys_file`` and/or ``keys`` (env: MINIML_SERVE__AUTH__KEYS as a YAML/JSON list)."""

    enabled: bool | None = Field(
        default=None,
        description="None: on when any key is configured (and required on a non-loopback host); "
        "false: serve without keys on purpose",
    )
    keys_file: Path | None = None
    reload_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="check the keys file (and shared keys) for changes this often (also on SIGHUP)",
    )
    keys_redis: str | None = Field(
        default=None,
        pattern=r"^rediss?://",
        description="also follow the keys published to this Redis (`miniml keys publish`): replicas on "
        "several hosts share keys without sharing a file",
    )
    keys_redis_prefix: str = Field(
        default="miniml:keys", min_length=1, description="Redis key of the shared keys"
    )
    keys: list[ApiKeyRecord] = Field(default_factory=list)
    open_routes: list[str] = Field(
        default_factory=lambda: ["/healthz", "/readyz", "/metrics"],
        description="paths served without a key",
    )


class RateLimitSettings(StepConfig):
    """Per-key budgets with the ``limits`` library."""

    storage: str = Field(
        default="memory://", pattern=r"^(memory|rediss?)://", description="memory:// or redis://..."
    )
    strategy: Literal["fixed-window", "sliding-window-counter", "moving-window"] = "sliding-window-counter"
    requests: RateString | None = Field(default=None, description="default request budget per key")
    chars: RateString | None = Field(default=None, description="default input-character budget per key")
    tokens: RateString | None = Field(
        default=None, description="default generation token budget per key (prompt + generated tokens)"
    )
    metric_key_names: bool = Field(
        default=False,
        description='label miniml_rate_limited_total with key names (off: key="*", names stay private)',
    )

    @model_validator(mode="after")
    def _tokens_can_be_refunded(self) -> RateLimitSettings:
        if self.tokens is not None and self.strategy == "moving-window":
            raise ValueError(
                "ratelimit.tokens needs strategy sliding-window-counter or fixed-window (a moving window "
                "cannot give back the unused part of a reservation)"
            )
        return self


class RequestLimits(StepConfig):
    """Size limits on every request: 413 for the body, 422 for inputs."""

    max_body_bytes: int = Field(default=1_048_576, ge=64)
    max_inputs: int = Field(default=64, ge=1, description="inputs per request")
    max_chars: int = Field(default=10_000, ge=1, description="characters per input")


class LogSettings(StepConfig):
    """Structured JSON logs on stderr."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    log_inputs: bool = Field(default=False, description="include the full input texts in access logs")


class GenerationLimits(StepConfig):
    """Caps on generation requests (seq2seq / causal_lm models): 413 / 422 above them."""

    max_new_tokens: int = Field(default=512, ge=1, le=65536, description="max tokens one answer may ask for")
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, description="max prompt tokens; default: the model's max_input_tokens"
    )
    guided: GuidedLimits = Field(
        default_factory=lambda: GuidedLimits(), description="bounds on compiling output constraints"
    )


class AutoscalingSettings(StepConfig):
    """``backend.replicas: auto``: Ray Serve's autoscaler, driven by requests in flight per replica."""

    min_replicas: int = Field(default=1, ge=1, le=4096, description="never fewer replicas")
    max_replicas: int = Field(default=4, ge=1, le=4096, description="never more replicas")
    target_ongoing_requests: float = Field(
        default=32.0,
        gt=0,
        description="requests in flight per replica the autoscaler aims at (batching wants several)",
    )
    upscale_delay_s: float = Field(default=30.0, ge=0, description="load above target this long: add")
    downscale_delay_s: float = Field(default=600.0, ge=0, description="load below target this long: remove")
    look_back_period_s: float = Field(
        default=30.0, gt=0, description="the load is the mean of requests in flight over this window"
    )
    metrics_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="how often each proxy and replica reports its load to Serve's controller",
    )

    @model_validator(mode="after")
    def _bounds_agree(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        if self.look_back_period_s <= self.metrics_interval_s:
            raise ValueError(
                f"autoscaling.look_back_period_s ({self.look_back_period_s:g}) must be above "
                f"metrics_interval_s ({self.metrics_interval_s:g}): the window would hold at most one "
                "report; raise look_back_period_s or lower metrics_interval_s"
            )
        return self


class ServeBackendSettings(StepConfig):
    """Where ``miniml serve`` runs: this process (``local``) or Ray Serve replicas (``ray``)."""

    type: Literal["local", "ray"] = Field(
        default="local", description="local: one process (uvicorn); ray: replicas on a Ray cluster"
    )
    address: str = Field(
        default="auto",
        description="ray: auto | local | HOST:PORT (the head's GCS) | ray://HOST:10001 (Ray Client)",
    )
    replicas: int | Literal["auto"] = Field(
        default=1, description="ray: replicas of the app, or auto (the autoscaling section)"
    )
    autoscaling: AutoscalingSettings = Field(default_factory=lambda: AutoscalingSettings())
    cpus_per_replica: float = Field(
        default=1.0, gt=0, le=1024, description="ray: CPUs each replica reserves (and its torch threads)"
    )
    gpus_per_replica: float = Field(default=0.0, ge=0, le=64, description="ray: GPUs each replica reserves")
    max_ongoing_requests: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="ray: requests one replica takes at once (Ray's default of 5 would starve the batcher)",
    )
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode", description="ray: where Ray Serve's HTTP proxies run (on server.port)"
    )
    app_name: str = Field(
        default="miniml", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="ray: the Serve application's name"
    )

    @field_validator("address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        from pydantic import ValidationError

        try:  # the same addresses as train / predict accept
            return BackendConfig.model_validate({"address": value}).address
        except ValidationError as err:
            raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None

    @field_validator("replicas")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 4096:
            raise ValueError("replicas must be a count from 1 to 4096, or auto")
        return value

    @property
    def min_replicas(self) -> int:
        """Replicas the cluster must hold from the start."""
        return self.autoscaling.min_replicas if self.replicas == "auto" else int(self.replicas)


class ServeSettings(StepConfig):
    """Everything ``miniml serve`` needs; see each section."""

    env_section = "serve"

    models: list[str] = Field(default_factory=list, description="model URIs: models:/NAME@ALIAS, folders")
    follow_aliases: bool = Field(
        default=True, description="reload when a served alias moves to a new version"
    )
    alias_poll_s: float = Field(default=5.0, gt=0)
    device: str | None = Field(
        default=None, description="torch device, e.g. cuda:0; default: the predictor's"
    )
    server: ServerSettings = Field(default_factory=lambda: ServerSettings())
    batching: BatchingSettings = Field(default_factory=lambda: BatchingSettings())
    cache: CacheSettings = Field(default_factory=lambda: CacheSettings())
    auth: AuthSettings = Field(default_factory=lambda: AuthSettings())
    ratelimit: RateLimitSettings = Field(default_factory=lambda: RateLimitSettings())
    limits: RequestLimits = Field(default_factory=lambda: RequestLimits())
    generation: GenerationLimits = Field(default_factory=lambda: GenerationLimits())
    logging: LogSettings = Field(default_factory=lambda: LogSettings())
    monitor: MonitorSettings = Field(default_factory=lambda: MonitorSettings())
    routing: dict[str, RoutingSettings] = Field(
        default_factory=dict, description="per served name: a challenger, canary share or shadow"
    )
    backend: ServeBackendSettings = Field(
        default_factory=lambda: ServeBackendSettings(), description="local, or Ray Serve replicas"
    )

    @field_validator("models")
    @classmethod
    def _no_duplicate_uris(cls, uris: list[str]) -> list[str]:
        if len(set(uris)) != len(uris):
            raise ValueError("a model URI is listed twice; list each once")
        return uris

    @model_validator(mode="after")
    def _queue_fits_a_request(self) -> ServeSettings:
        if self.batching.queue_size < self.limits.max_inputs:
            raise ValueError(
                f"batching.queue_size ({self.batching.queue_size}) must be >= limits.max_inputs "
                f"({self.limits.max_inputs}), or a full-size request could never be queued"
            )
        return self

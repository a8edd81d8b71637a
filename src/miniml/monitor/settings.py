"""Settings of model monitoring in the server: ``monitor.drift``, ``monitor.feedback`` and ``routing``.

They are sections of the serve config (``miniml.serve.settings.ServeSettings``), so the file < environment
(``MINIML_SERVE__MONITOR__DRIFT__WINDOW=500``) < ``--set monitor.drift.window=500`` precedence applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from miniml.config import StepConfig
from miniml.monitor.canary import Sticky
from miniml.monitor.drift import thresholds_with
from miniml.monitor.predictions import (
    MemoryPredictions,
    PostgresPredictions,
    PredictionStore,
    RedisPredictions,
)


class DriftSettings(StepConfig):
    """The sliding window per served version and when a verdict is due."""

    enabled: bool = True
    window: int = Field(default=1000, ge=10, le=1_000_000, description="inputs in the window")
    max_age_s: float | None = Field(default=None, gt=0, description="drop inputs older than this")
    min_inputs: int = Field(default=200, ge=1, description="fewer inputs in the window: no verdict")
    min_interval_s: float = Field(default=1.0, ge=0, description="reuse a verdict younger than this")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="per signal, e.g. {labels: 0.15}; see miniml.monitor.drift"
    )
    embedding_rows: int = Field(
        default=200, ge=10, le=10_000, description="window inputs embedded per verdict (transformers)"
    )
    embedding_interval_s: float = Field(
        default=60.0, ge=0, description="recompute the embedding signal at most this often"
    )

    @field_validator("thresholds")
    @classmethod
    def _known_signals(cls, value: dict[str, float]) -> dict[str, float]:
        thresholds_with(value)
        return value


class FeedbackSettings(StepConfig):
    """Where predictions wait for feedback, and where feedback goes."""

    enabled: bool = True
    store: Literal["memory", "redis", "postgres"] = "memory"
    url: str | None = Field(default=None, description="redis://... or postgresql://... for those stores")
    prefix: str = Field(default="miniml:predictions", min_length=1, description="redis: key prefix")
    ttl_s: float = Field(default=86_400.0, gt=0, description="feedback after this: 404 (expired)")
    max_entries: int = Field(default=100_000, ge=1, description="predictions kept (memory, postgres)")
    window: int = Field(default=1000, ge=1, description="labelled answers per online-quality window")
    log: Path | None = Field(
        default=None, description="feedback JSONL (default MINIML_HOME/feedback/NAME.jsonl)"
    )
    keep_inputs: bool = Field(default=True, description="keep input texts for the feedback log")

    @model_validator(mode="after")
    def _url_for_remote(self) -> FeedbackSettings:
        schemes = {"redis": ("redis://", "rediss://"), "postgres": ("postgresql://", "postgres://")}
        if self.store in schemes and not (self.url or "").startswith(schemes[self.store]):
            want = schemes[self.store][0]
            raise ValueError(f"feedback.store {self.store} needs feedback.url, e.g. {want}HOST/...")
        return self


class MonitorSettings(StepConfig):
    """``monitor:`` in the serve config."""

    drift: DriftSettings = Field(default_factory=lambda: DriftSettings())
    feedback: FeedbackSettings = Field(default_factory=lambda: FeedbackSettings())


class RoutingSettings(StepConfig):
    """``routing: {NAME: {...}}``: a challenger version next to the served one."""

    challenger: str = Field(min_length=1, description="model URI, e.g. models:/NAME@challenger")
    canary: float = Field(default=0.0, ge=0, le=1, description="share of requests the challenger answers")
    shadow: bool = Field(default=False, description="the challenger also runs every request, unanswered")
    sticky: Sticky = Field(default="request", description="route by request id or by API key")

    @model_validator(mode="after")
    def _one_mode(self) -> RoutingSettings:
        if self.shadow and self.canary > 0:
            raise ValueError(
                "shadow: true answers every request from the champion; set canary: 0 with it "
                "(or shadow: false for a canary)"
            )
        return self


def build_store(settings: FeedbackSettings) -> PredictionStore:
    """The prediction store the settings ask for."""
    if settings.store == "redis":
        assert settings.url is not None
        return RedisPredictions(settings.url, prefix=settings.prefix, ttl_s=settings.ttl_s)
    if settings.store == "postgres":
        assert settings.url is not None
        return PostgresPredictions(settings.url, ttl_s=settings.ttl_s, max_entries=settings.max_entries)
    return MemoryPredictions(settings.max_entries, settings.ttl_s)

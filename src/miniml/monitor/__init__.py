"""Model monitoring: reference profiles, drift over a sliding window, feedback and online quality, canary
and shadow routing.

- :mod:`~miniml.monitor.profile`: ``reference.json``, written at training time (``build_profile``);
- :mod:`~miniml.monitor.drift` / :mod:`~miniml.monitor.stats`: one statistic per signal (scipy, scikit-learn);
- :mod:`~miniml.monitor.window`: the sliding window and :class:`DriftMonitor` the server keeps per version;
- :mod:`~miniml.monitor.predictions` / :mod:`~miniml.monitor.quality`: predictions awaiting feedback
  (memory, Redis, PostgreSQL), online accuracy / macro-F1, the feedback log;
- :mod:`~miniml.monitor.canary`: which version answers, and shadow agreement.
"""

from miniml.monitor.canary import Agreement, CanaryRouter
from miniml.monitor.drift import DEFAULT_THRESHOLDS, SIGNALS, SignalResult, compare
from miniml.monitor.predictions import Answer, PredictionRecord
from miniml.monitor.profile import (
    REFERENCE_FILE,
    ReferenceProfile,
    build_profile,
    read_profile,
    write_profile,
)
from miniml.monitor.quality import FeedbackLog, OnlineQuality, read_feedback
from miniml.monitor.settings import DriftSettings, FeedbackSettings, MonitorSettings, RoutingSettings
from miniml.monitor.window import DriftMonitor, DriftReport, SlidingWindow

__all__ = [
    "DEFAULT_THRESHOLDS",
    "REFERENCE_FILE",
    "SIGNALS",
    "Agreement",
    "Answer",
    "CanaryRouter",
    "DriftMonitor",
    "DriftReport",
    "DriftSettings",
    "FeedbackLog",
    "FeedbackSettings",
    "MonitorSettings",
    "OnlineQuality",
    "PredictionRecord",
    "ReferenceProfile",
    "RoutingSettings",
    "SignalResult",
    "SlidingWindow",
    "build_profile",
    "compare",
    "read_feedback",
    "read_profile",
    "write_profile",
]

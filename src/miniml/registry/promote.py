"""The promotion gate: a candidate takes the ``champion`` alias only if it beats it on the same test split.

"Same split" means the same dataset fingerprint. When both versions were tested on the candidate's split,
their stored test metrics (``miniml.json`` ``metrics``) are compared directly; otherwise the champion (and a
candidate without the metric) is evaluated on the candidate's test split, by the evaluation function the
caller passes (``miniml.evaluate.score_of``: the registry itself never runs a model). The candidate must beat
the champion by ``margin`` (higher is better, except for loss-like metrics). ``force`` skips the gate.

Gate settings, lowest to highest precedence: defaults (``champion``, ``macro_f1``, margin 0) < the
registered model's tags (:func:`set_gate`, e.g. from a training config) < ``MINIML_PROMOTE__METRIC`` /
``__MARGIN`` / ``__ALIAS`` < command-line options.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from mlflow.exceptions import MlflowException
from pydantic import Field

from miniml.config import StepConfig, load_config, validate
from miniml.errors import RegistryError
from miniml.registry.backend import call, get_client
from miniml.registry.store import ModelVersion, download_version, get_version, set_alias
from miniml.registry.uris import check_alias

GATE_TAG = "miniml.gate."
LOWER_IS_BETTER = ("loss", "error", "perplexity", "latency", "wer", "cer")
# scores a model folder on a dataset's test split: (folder, dataset, metric) -> value or None
Evaluator = Callable[[Path, str, str], float | None]


class GateConfig(StepConfig):
    """How ``promote`` decides: which alias moves, on which test metric, by how much it must win."""

    env_section: ClassVar[str] = "promote"
    alias: str = Field("champion", min_length=1, max_length=64)
    metric: str = Field("macro_f1", min_length=1, max_length=100)
    margin: float = Field(0.0, ge=0.0, le=1e6, description="how much better the candidate must score")


@dataclass(frozen=True)
class PromotionResult:
    """What the gate decided and the figures it decided on."""

    promoted: bool
    candidate_score: float | None
    champion_score: float | None
    champion_version: int | None
    reason: str
    name: str = ""
    version: int = 0
    alias: str = "champion"
    metric: str = "macro_f1"
    margin: float = 0.0


def lower_is_better(metric: str) -> bool:
    """Loss-like metrics (loss, error rates, perplexity, latency) improve downwards."""
    name = metric.lower()
    return any(word in name for word in LOWER_IS_BETTER)


def beats(candidate: float, champion: float, margin: float, metric: str) -> bool:
    """Whether ``candidate`` is better than ``champion`` by strictly more than ``margin``."""
    if lower_is_better(metric):
        return candidate < champion - margin
    return candidate > champion + margin


# ---------------------------------------------------------------- gate settings


def set_gate(
    name: str, *, metric: str | None = None, margin: float | None = None, alias: str | None = None
) -> None:
    """Store per-model gate defaults as registered-model tags ``miniml.gate.metric|margin|alias``."""
    get_version(name, "latest")  # unknown model → one-line error listing the known ones
    given = {k: v for k, v in {"metric": metric, "margin": margin, "alias": alias}.items() if v is not None}
    settings = validate(GateConfig, given, f"promotion gate of {name}")
    for key in given:
        value = str(getattr(settings, key))
        call("cannot store gate settings", get_client().set_registered_model_tag, name, GATE_TAG + key, value)


def gate_config(
    name: str, overrides: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> GateConfig:
    """Gate settings for ``name``: defaults < model tags < environment < ``overrides`` (``key=value``)."""
    rm = call(f"cannot read registered model {name!r}", get_client().get_registered_model, name)
    tags = {k[len(GATE_TAG) :]: v for k, v in (rm.tags or {}).items() if k.startswith(GATE_TAG)}
    return load_config(
        GateConfig, None, overrides, environ=environ, defaults=tags, where=f"promotion gate of {name}"
    )


# ---------------------------------------------------------------- scores


def stored_score(mv: ModelVersion, metric: str) -> float | None:
    """The test ``metric`` recorded in the version's ``miniml.json`` (``metric`` or ``test_metric``)."""
    metrics: dict[str, float] = dict(mv.info.metrics) if mv.info is not None else {}
    for key in (metric, f"test_{metric}"):
        if key in metrics:
            return float(metrics[key])
    tag = mv.tags.get(f"metric.{metric}")
    return float(tag) if tag is not None else None


def fingerprint(mv: ModelVersion) -> str | None:
    dataset = mv.info.dataset if mv.info is not None else {}
    return str(dataset.get("fingerprint") or mv.tags.get("dataset.fingerprint") or "") or None


def dataset_ref(mv: ModelVersion) -> str:
    """How to open the dataset the version was tested on: its folder if recorded, else NAME/FINGERPRINT."""
    dataset = mv.info.dataset if mv.info is not None else {}
    for key in ("path", "source"):
        if dataset.get(key):
            return str(dataset[key])
    name = dataset.get("name") or mv.tags.get("dataset.name")
    fp = fingerprint(mv)
    if not (name and fp):
        raise RegistryError(
            f"version {mv.version} of {mv.name!r} does not record the dataset it was tested on",
            hint="retrain it with `miniml train`, or promote with --force",
        )
    return f"{name}/{fp}"


def evaluated_score(mv: ModelVersion, dataset: str, metric: str, evaluate: Evaluator | None) -> float:
    """Evaluate ``mv`` on the test split of ``dataset`` with ``evaluate`` and return ``metric``."""
    if evaluate is None:
        raise RegistryError(
            f"cannot compare version {mv.version} of {mv.name!r} on the same split without evaluating it, "
            "and no evaluation function was given",
            hint="promote with --force, or pass evaluate=miniml.evaluate.score_of",
        )
    score = evaluate(download_version(mv), dataset, metric)
    if score is None:
        raise RegistryError(f"evaluation of {mv.uri} gave no metric {metric!r}", hint="pick another --metric")
    return float(score)


def scores_on_same_split(
    candidate: ModelVersion, champion: ModelVersion, metric: str, evaluate: Evaluator | None = None
) -> tuple[float, float, str]:
    """(candidate score, champion score, how they were obtained) on the candidate's test split."""
    cand, champ = stored_score(candidate, metric), stored_score(champion, metric)
    same = fingerprint(candidate) is not None and fingerprint(candidate) == fingerprint(champion)
    if same and cand is not None and champ is not None:
        return cand, champ, f"stored test {metric} on dataset {fingerprint(candidate)}"
    dataset = dataset_ref(candidate)
    if cand is None:
        cand = evaluated_score(candidate, dataset, metric, evaluate)
    champ = evaluated_score(champion, dataset, metric, evaluate)
    return cand, champ, f"champion re-evaluated on the candidate's test split ({dataset})"


# ---------------------------------------------------------------- promote


def promote(
    name: str,
    version: int,
    *,
    alias: str = "champion",
    metric: str = "macro_f1",
    margin: float = 0.0,
    force: bool = False,
    evaluate: Evaluator | None = None,
) -> PromotionResult:
    """Move ``alias`` to ``version`` if it beats the current holder on the same test split (or ``force``).

    ``evaluate(folder, dataset, metric)`` scores a version when the stored test metrics do not compare
    (``miniml.evaluate.score_of``); without it such a comparison is refused.
    """
    check_alias(alias)
    candidate = get_version(name, version)
    champion = _holder(name, alias)

    def result(won: bool, cand: float | None, champ: float | None, reason: str) -> PromotionResult:
        held = champion.version if champion is not None else None
        return PromotionResult(won, cand, champ, held, reason, name, candidate.version, alias, metric, margin)

    if champion is None:
        _move(candidate, alias, None)
        return result(True, stored_score(candidate, metric), None, f"no {alias} yet")
    if champion.version == candidate.version:
        score = stored_score(candidate, metric)
        return result(True, score, score, f"already the {alias}")
    if force:
        _move(candidate, alias, champion.version)
        cand, champ = stored_score(candidate, metric), stored_score(champion, metric)
        return result(True, cand, champ, "forced (gate skipped)")
    cand, champ, how = scores_on_same_split(candidate, champion, metric, evaluate)
    won = beats(cand, champ, margin, metric)
    if won:
        _move(candidate, alias, champion.version)
    word = "beats" if won else "does not beat"
    return result(
        won, cand, champ, f"candidate {word} {alias} v{champion.version} by more than {margin:g} ({how})"
    )


def _holder(name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None when no version has it."""
    rm = call(f"cannot read registered model {name!r}", get_client().get_registered_model, name)
    version = (rm.aliases or {}).get(alias)
    return get_version(name, int(version)) if version is not None else None


def _move(candidate: ModelVersion, alias: str, previous: int | None) -> None:
    set_alias(candidate.name, candidate.version, alias)
    record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "previous": previous}
    with contextlib.suppress(MlflowException):  # the alias moved; a missing audit tag is not a failure
        get_client().set_model_version_tag(
            candidate.name, str(candidate.version), f"miniml.promoted.{alias}", json.dumps(record)
        )

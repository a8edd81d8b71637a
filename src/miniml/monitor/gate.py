"""The online promotion gate: ``miniml models promote NAME VERSION --online``.

Next to the offline gate (test-split metric, :mod:`miniml.registry.promote`), this one decides on live
feedback: the accuracy of each version's answers in the feedback log (``MINIML_HOME/feedback/NAME.jsonl``,
or the server's ``monitor.feedback.log``). The candidate needs at least ``min_feedback`` labelled answers
and must beat the alias holder's accuracy by more than ``margin``. When both versions answered the same
inputs (shadow mode) at least ``min_feedback`` times, only those paired inputs are compared; otherwise each
version is scored on the inputs it answered (canary mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miniml.errors import RegistryError
from miniml.monitor.quality import read_feedback, same_answer
from miniml.paths import home
from miniml.registry.promote import PromotionResult, beats
from miniml.registry.store import get_version, set_alias

METRIC = "online_accuracy"


def default_log(name: str) -> Path:
    return home() / "feedback" / f"{name}.jsonl"


def answers_by_version(row: dict[str, Any]) -> dict[int, bool]:
    """Whether each version's answer in one feedback row was right."""
    label = str(row.get("label"))
    out = {}
    for answer in (row.get("answers") or {}).values():
        if answer.get("version") is not None:
            out[int(answer["version"])] = same_answer(label, str(answer.get("prediction")))
    return out


def online_scores(
    rows: list[dict[str, Any]], candidate: int, champion: int | None, minimum: int
) -> tuple[tuple[float | None, int], tuple[float | None, int], str]:
    """((candidate accuracy, n), (champion accuracy, n), how) over the feedback rows."""
    graded = [answers_by_version(r) for r in rows]
    paired = [g for g in graded if candidate in g and champion in g]
    how = "paired inputs both versions answered"
    if champion is None or len(paired) < minimum:
        paired, how = graded, "each version on the inputs it answered"

    def score(version: int | None) -> tuple[float | None, int]:
        hits = [g[version] for g in paired if version in g]
        return (sum(hits) / len(hits) if hits else None), len(hits)

    return score(candidate), score(champion), how


def promote_online(
    name: str,
    version: int,
    *,
    alias: str = "champion",
    margin: float = 0.0,
    min_feedback: int = 100,
    log: Path | None = None,
    force: bool = False,
) -> PromotionResult:
    """Move ``alias`` to ``version`` if its online accuracy beats the holder's (see the module docstring)."""
    candidate = get_version(name, version)
    holder = _holder_version(name, alias)
    path = log or default_log(name)
    if not path.is_file():
        raise RegistryError(
            f"no feedback log for {name} at {path}",
            hint="send feedback to the server (POST /v1/models/NAME/feedback) or pass --feedback FILE",
        )
    rows = [r for r in read_feedback(path) if r.get("model") in (None, name)]
    (cand, n_cand), (champ, _), how = online_scores(rows, version, holder, min_feedback)

    def result(won: bool, reason: str) -> PromotionResult:
        return PromotionResult(won, cand, champ, holder, reason, name, version, alias, METRIC, margin)

    if holder == version:
        return result(True, f"already the {alias}")
    if not force and n_cand < min_feedback:
        return result(False, f"{n_cand} labelled answers of v{version}; the gate needs {min_feedback}")
    won = (
        force or holder is None or champ is None or (cand is not None and beats(cand, champ, margin, METRIC))
    )
    if won:
        set_alias(name, candidate.version, alias)
    reason = "forced (gate skipped)" if force else f"{n_cand} labelled answers, {how}"
    return result(won, reason)


def _holder_version(name: str, alias: str) -> int | None:
    try:
        return get_version(name, alias).version
    except RegistryError:
        return None

"""Distances between a reference and a window, each a maintained library's statistic where one exists.

- :func:`psi`: population stability index over the reference's quantile bins (numeric signals: lengths,
  confidence). PSI has no scipy function; it is ``sum((c - r) * ln(c / r))``, i.e. the symmetrised
  Kullback-Leibler divergence, computed here with ``scipy.special.rel_entr`` on smoothed proportions.
- :func:`js_distance`: Jensen-Shannon distance (base 2, in [0, 1]) of two categorical distributions,
  ``scipy.spatial.distance.jensenshannon`` (labels, scripts).
- :func:`proportion_shift`: a rate's change (unknown words) with the chi-square test of the 2x2 table,
  ``scipy.stats.chi2_contingency``.
- :func:`domain_classifier`: how well a classifier tells window embeddings from reference ones: the
  out-of-fold ROC AUC of a scikit-learn logistic regression (0.5: indistinguishable) with the Mann-Whitney
  U test's p-value (``scipy.stats.mannwhitneyu``; AUC = U / (n1 n0), so both come from the same scores).

Why not Evidently: its 0.7 API computes reports over pandas frames (milliseconds to seconds each) and pulls
plotly and more into the server's dependencies; the server recomputes these figures at every scrape of a
1,000-input window, in about a millisecond with the functions here (see ``miniml.monitor.drift``). The
default thresholds follow Evidently's for large samples (Jensen-Shannon 0.1) and the usual PSI rule of
thumb (0.2: a significant shift).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import chi2_contingency, mannwhitneyu

EPS = 1e-4  # floor for empty bins: keeps PSI finite when a window leaves a bin empty


def quantile_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """Inner bin edges at the reference's quantiles, plus its range: bin i holds edges[i-1] < x <= edges[i].

    The first bin holds values below the reference's minimum and the last those above its maximum, so a
    window outside the reference's range moves mass into bins the reference left empty, even when the
    reference is concentrated on a few values (a confident model's top score: most at 0.99+).
    """
    if values.size == 0:
        return []
    v = values.astype(np.float64)
    qs = np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])
    low = np.nextafter(v.min(), -np.inf)
    return [float(x) for x in np.unique(np.r_[low, qs, v.max()])]


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bin (len(edges) + 1 bins; the outer ones are open-ended)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return np.bincount(idx, minlength=len(edges) + 1)


def proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.full(len(counts), 1.0 / max(1, len(counts)))


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count (or proportion) vectors over the same bins."""
    r = np.maximum(proportions(np.asarray(reference, dtype=np.float64)), EPS)
    c = np.maximum(proportions(np.asarray(current, dtype=np.float64)), EPS)
    return float(np.sum(rel_entr(c, r) + rel_entr(r, c)))


def aligned(reference: Mapping[str, float], current: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Two categorical distributions as vectors over the union of their categories."""
    keys = sorted(set(reference) | set(current))
    return (
        np.array([reference.get(k, 0.0) for k in keys], dtype=np.float64),
        np.array([current.get(k, 0.0) for k in keys], dtype=np.float64),
    )


def js_distance(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (base 2) of two categorical distributions (counts or proportions)."""
    r, c = aligned(reference, current)
    if r.sum() == 0 or c.sum() == 0:
        return 0.0
    return float(jensenshannon(r, c, base=2))


def proportion_shift(ref_hits: int, ref_total: int, hits: int, total: int) -> tuple[float, float]:
    """(current rate - reference rate, chi-square p-value of the 2x2 table)."""
    if ref_total == 0 or total == 0:
        return 0.0, 1.0
    shift = hits / total - ref_hits / ref_total
    table = np.array([[ref_hits, ref_total - ref_hits], [hits, total - hits]], dtype=np.float64)
    if (table.sum(axis=0) == 0).any():  # nobody hit, or everybody did: no evidence either way
        return shift, 1.0
    return shift, float(chi2_contingency(table).pvalue)


def domain_classifier(
    reference: np.ndarray, current: np.ndarray, *, folds: int = 5, seed: int = 0
) -> tuple[float, float]:
    """(out-of-fold ROC AUC, Mann-Whitney p-value) of telling ``current`` rows from ``reference`` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_ref, n_cur = len(reference), len(current)
    if min(n_ref, n_cur) < folds:
        return 0.5, 1.0
    x = np.vstack([reference, current]).astype(np.float64)
    y = np.r_[np.zeros(n_ref), np.ones(n_cur)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    test = mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    auc = float(test.statistic) / (n_ref * n_cur)
    return auc, float(test.pvalue)

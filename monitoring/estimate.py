"""Performance before labels arrive: confidence-based estimation (CBPE, as in NannyML).

If a model's probabilities are calibrated, each customer's outcome is a coin
with the probability the model gave, so the AUC the scores *will* show once
outcomes mature can be expected now: the expected number of correctly ordered
(event, non-event) pairs over the expected number of such pairs. Scores are
first mapped through an isotonic calibration fitted on the champion's
validation sample (its scores and realised labels), as CBPE does on its
reference; ranking is by the raw score, as the realised AUC's.

The estimate assumes calibration still holds: a shift in how features relate to
outcomes (concept drift) breaks it, which is why every estimate is reconciled
with the realised AUC once labels mature (`reconcile`) and a month whose estimate
missed by more than `tolerance` is flagged.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Calibrator:
    """Isotonic map from score to event probability, fitted on the reference's labels."""

    def __init__(self, scores: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
        self._model: Any = None
        if scores is None or labels is None:
            return
        keep = np.isfinite(scores) & np.isfinite(labels)
        if keep.sum() >= 50 and 0 < labels[keep].mean() < 1:
            from sklearn.isotonic import IsotonicRegression

            self._model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            self._model.fit(scores[keep], labels[keep])

    @property
    def fitted(self) -> bool:
        return self._model is not None

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        clipped = np.clip(scores, 0.0, 1.0)
        return clipped if self._model is None else self._model.predict(clipped)


def expected_auc(probabilities: np.ndarray, scores: np.ndarray) -> float:
    """AUC expected when row i's outcome is Bernoulli(probabilities[i]), ranked by `scores`.

    Pairs (i, j), i != j, count p_i (1 - p_j) when s_i > s_j and half that on ties.
    """
    p = np.asarray(probabilities, dtype=float)
    s = np.asarray(scores, dtype=float)
    keep = np.isfinite(p) & np.isfinite(s)
    p, s = p[keep], s[keep]
    if p.size < 2:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s, p = s[order], p[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    counts = np.diff(np.r_[starts, s.size])
    positives = np.add.reduceat(p, starts)
    negatives = counts - positives
    self_pairs = p * (1 - p)
    negatives_below = np.cumsum(negatives) - negatives
    tied = positives * negatives - np.add.reduceat(self_pairs, starts)
    concordant = float(np.sum(positives * negatives_below) + 0.5 * np.sum(tied))
    total = float(p.sum() * (1 - p).sum() - self_pairs.sum())
    return concordant / total if total > 0 else float("nan")


def estimate(scores: np.ndarray, calibrator: Calibrator) -> dict[str, float]:
    """Estimated AUC and event rate of one month's scores, before any label is known."""
    probabilities = calibrator(np.asarray(scores, dtype=float))
    return {
        "rows": int(np.isfinite(probabilities).sum()),
        "estimated_auc": expected_auc(probabilities, scores),
        "estimated_event_rate": float(np.nanmean(probabilities))
        if probabilities.size
        else float("nan"),
    }


def reconcile(
    estimated: dict[str, dict[str, float]],
    realised: dict[str, dict[str, Any]],
    tolerance: float,
) -> list[dict[str, Any]]:
    """Per month: the estimate, the realised figures once matured, and whether it was wrong."""
    out = []
    for month in sorted(estimated):
        row: dict[str, Any] = {"month": month, **estimated[month]}
        actual = realised.get(month)
        if actual is not None and np.isfinite(actual.get("auc", np.nan)):
            row["realised_auc"] = actual["auc"]
            row["realised_event_rate"] = actual["event_rate"]
            row["matured_rows"] = actual["rows"]
            row["difference"] = row["estimated_auc"] - actual["auc"]
            row["estimate_wrong"] = bool(abs(row["difference"]) > tolerance)
            row["status"] = "matured"
        else:
            row["status"] = "estimated (outcomes not matured)"
        out.append(row)
    return out

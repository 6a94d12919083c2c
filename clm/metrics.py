"""Model metrics, one definition for training, promotion and monitoring.

Binary scores (churn, each propensity product, each next stage one-vs-rest): AUC,
PR-AUC (average precision), KS, Gini, log loss, Brier, top-decile lift and
calibration by decile with its expected calibration error. Multiclass (the next
stage): log loss, macro-F1 and recall per class. scikit-learn computes every
metric it has; deciles (equal-count groups of the sorted scores) are ours.

Inputs are arrays of equal length: `y` holds 0/1 outcomes (class indices for the
multiclass metrics), `p` finite probabilities; callers drop unknown labels first.
A metric that needs both outcomes (AUC, Gini, KS, PR-AUC, lift) is NaN when `y`
holds only one of them, or no rows: undefined, never an exception or a made-up
0.5. scikit-learn is imported when a metric is computed, not at import.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "DECILES",
    "auc",
    "binary_metrics",
    "brier",
    "calibration_by_decile",
    "expected_calibration_error",
    "gini",
    "ks",
    "lift_by_decile",
    "log_loss",
    "macro_f1",
    "multiclass_log_loss",
    "multiclass_metrics",
    "per_class_recall",
    "pr_auc",
    "top_decile_lift",
]

DECILES = 10
_NAN = float("nan")

ArrayLike = npt.ArrayLike


def _binary(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:

    y_arr = np.asarray(y, dtype=float).ravel()
    p_arr = np.asarray(p, dtype=float).ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"{len(y_arr)} outcomes but {len(p_arr)} scores")
    return y_arr, p_arr


def _both_outcomes(y: np.ndarray) -> bool:
    """Whether `y` holds at least one event and one non-event (ranking metrics need both)."""
    positives = int((y == 1).sum())
    return 0 < positives < len(y)


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """ROC AUC: the chance that a random event is scored above a random non-event (ties
    count half). NaN with one outcome only."""
    from sklearn.metrics import roc_auc_score

    y, p = _binary(y, p)
    return float(roc_auc_score(y, p)) if _both_outcomes(y) else _NAN


def gini(y: ArrayLike, p: ArrayLike) -> float:
    """2 * AUC - 1, the banking convention for the same ranking power."""
    return 2 * auc(y, p) - 1


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Average precision (step-wise area under the precision-recall curve); NaN with one
    outcome only."""
    from sklearn.metrics import average_precision_score

    y, p = _binary(y, p)
    return float(average_precision_score(y, p)) if _both_outcomes(y) else _NAN


def ks(y: ArrayLike, p: ArrayLike) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score distributions of events and
    non-events (= max |TPR - FPR| over thresholds). NaN with one outcome only."""
    from sklearn.metrics import roc_curve

    y, p = _binary(y, p)
    if not _both_outcomes(y):
        return _NAN
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return float(np.max(np.abs(tpr - fpr)))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Binary cross-entropy; defined with one outcome too (NaN without rows).

    scikit-learn clips probabilities to [eps, 1 - eps]: a model that says 0 for an
    event that happened gets a large loss, not an infinite one that hides every other
    difference."""
    from sklearn.metrics import log_loss as sk_log_loss

    y, p = _binary(y, p)
    return float(sk_log_loss(y, p, labels=[0, 1])) if len(y) else _NAN


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probabilities; defined with one outcome too."""
    y, p = _binary(y, p)
    return float(((p - y) ** 2).mean()) if len(y) else _NAN


def _deciles(p: np.ndarray, bins: int, *, highest_first: bool) -> list[np.ndarray]:
    """Row positions in `bins` equal-count groups of the sorted scores (sizes differ by at
    most one, larger groups first); ties keep their row order."""

    order = np.argsort(-p if highest_first else p, kind="mergesort")
    return [part for part in np.array_split(order, bins) if len(part)]


def calibration_by_decile(
    y: ArrayLike, p: ArrayLike, bins: int = DECILES
) -> list[dict[str, float | int]]:
    """Mean predicted vs observed rate per decile of the score (1 = lowest scores).

    Rows `{decile, rows, mean_predicted, observed_rate}`; empty with fewer rows than
    `bins` (a decile of no rows says nothing)."""
    y, p = _binary(y, p)
    if len(y) < bins:
        return []
    return [
        {
            "decile": i,
            "rows": int(len(part)),
            "mean_predicted": float(p[part].mean()),
            "observed_rate": float(y[part].mean()),
        }
        for i, part in enumerate(_deciles(p, bins, highest_first=False), start=1)
    ]


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = DECILES) -> float:
    """Row-weighted mean |mean predicted - observed rate| over the score deciles (NaN with
    fewer rows than `bins`)."""
    table = calibration_by_decile(y, p, bins)
    total = sum(row["rows"] for row in table)
    if not total:
        return _NAN
    return float(
        sum(row["rows"] * abs(row["mean_predicted"] - row["observed_rate"]) for row in table)
        / total
    )


def lift_by_decile(y: ArrayLike, p: ArrayLike, bins: int = DECILES) -> list[float]:
    """Event rate per decile over the overall rate (first = highest scores); empty when
    there is no event, no non-event or fewer rows than `bins`."""
    y, p = _binary(y, p)
    if len(y) < bins or not _both_outcomes(y):
        return []
    base = y.mean()
    return [float(y[part].mean() / base) for part in _deciles(p, bins, highest_first=True)]


def top_decile_lift(y: ArrayLike, p: ArrayLike) -> float:
    """Event rate among the 10% highest scores over the overall rate (NaN when undefined)."""
    lifts = lift_by_decile(y, p)
    return lifts[0] if lifts else _NAN


def binary_metrics(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Every binary metric, keyed by the name training logs it under in MLflow."""
    y, p = _binary(y, p)
    area = auc(y, p)
    empty = len(y) == 0
    return {
        "auc": area,
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "ks": ks(y, p),
        "gini": 2 * area - 1,
        "top_decile_lift": top_decile_lift(y, p),
        "calibration_ece": expected_calibration_error(y, p),
        # Calibration-in-the-large: mean score minus observed rate (0 = unbiased).
        "calibration_bias": _NAN if empty else float(p.mean() - y.mean()),
        "event_rate": _NAN if empty else float(y.mean()),
        "rows": float(len(y)),
    }


def _multiclass(y: ArrayLike, other: ArrayLike, *, proba: bool) -> tuple[np.ndarray, np.ndarray]:

    y_arr = np.asarray(y, dtype=int).ravel()
    other_arr = np.asarray(other, dtype=float if proba else int)
    if len(other_arr) != len(y_arr):
        raise ValueError(f"{len(y_arr)} labels but {len(other_arr)} predictions")
    return y_arr, other_arr


def multiclass_log_loss(y: ArrayLike, proba: ArrayLike) -> float:
    """Cross-entropy of class-index labels `y` under `proba` (rows x classes); NaN without
    rows."""
    from sklearn.metrics import log_loss as sk_log_loss

    y, matrix = _multiclass(y, proba, proba=True)
    if not len(y):
        return _NAN
    return float(sk_log_loss(y, matrix, labels=list(range(matrix.shape[1]))))


def per_class_recall(y: ArrayLike, predicted: ArrayLike, n_classes: int) -> np.ndarray:
    """Recall of each class 0..n_classes-1; NaN for a class absent from `y`."""
    from sklearn.metrics import recall_score

    y, pred = _multiclass(y, predicted, proba=False)
    if not len(y):
        return np.full(n_classes, np.nan)
    return np.asarray(
        recall_score(y, pred, labels=list(range(n_classes)), average=None, zero_division=np.nan),
        dtype=float,
    )


def macro_f1(y: ArrayLike, predicted: ArrayLike) -> float:
    """Mean F1 over the classes present in `y` or in the predictions; NaN without rows."""
    from sklearn.metrics import f1_score

    y, pred = _multiclass(y, predicted, proba=False)
    return float(f1_score(y, pred, average="macro")) if len(y) else _NAN


def multiclass_metrics(y: ArrayLike, proba: ArrayLike, classes: Sequence[str]) -> dict[str, float]:
    """Log loss, macro-F1, accuracy and `recall_<class>` (classes present in `y`) for
    class-index labels `y` and probabilities `proba` whose columns follow `classes`."""

    y, matrix = _multiclass(y, proba, proba=True)
    predicted = matrix.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    out = {
        "log_loss": multiclass_log_loss(y, matrix),
        "macro_f1": macro_f1(y, predicted),
        "accuracy": float((predicted == y).mean()) if len(y) else _NAN,
        "rows": float(len(y)),
    }
    for name, value in zip(classes, per_class_recall(y, predicted, len(classes)), strict=True):
        if not np.isnan(value):
            out[f"recall_{name}"] = float(value)
    return out

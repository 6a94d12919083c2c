"""Evaluation metrics, computed with numpy only so the definitions are visible here.

Binary scores (churn, each propensity product): AUC, PR-AUC, log loss, Brier,
KS, Gini, lift in the top decile and calibration. Stage (multiclass): log loss,
macro-F1 and per-class recall, plus the "stays in its current stage" baseline the
stage model has to beat. Tests check these against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Probabilities are clipped before logs: a model that says 0 for an event that
# happened would otherwise get an infinite loss and hide every other difference.
_EPS = 1e-15


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=float)
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def auc(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> float:
    """ROC AUC (Mann-Whitney); NaN when only one class is present."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _ranks(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: precision at each positive, averaged (step-wise PR-AUC)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    positives = y.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    # Evaluate only at distinct thresholds, as tied scores form one step.
    last_of_run = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = np.cumsum(1 - y_sorted)[last_of_run]
    precision = tp / (tp + fp)
    recall = tp / positives
    recall_steps = np.diff(np.r_[0.0, recall])
    return float((recall_steps * precision).sum())


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    return float(((p - y) ** 2).mean())


def ks(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score CDFs of events and non-events."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    events, others = p[y == 1], p[y == 0]
    if len(events) == 0 or len(others) == 0:
        return float("nan")
    thresholds = np.unique(p)
    cdf_events = np.searchsorted(np.sort(events), thresholds, side="right") / len(events)
    cdf_others = np.searchsorted(np.sort(others), thresholds, side="right") / len(others)
    return float(np.max(np.abs(cdf_events - cdf_others)))


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Event rate among the 10% highest scores over the overall event rate."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    base = y.mean()
    if base == 0:
        return float("nan")
    top = max(1, int(np.ceil(len(y) * 0.10)))
    order = np.argsort(-p, kind="mergesort")[:top]
    return float(y[order].mean() / base)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted vs observed rate per decile of the score (equal-count bins)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="mergesort")
    rows = []
    for chunk in np.array_split(order, bins):
        if len(chunk) == 0:
            continue
        rows.append(
            {
                "predicted": float(p[chunk].mean()),
                "observed": float(y[chunk].mean()),
                "n": float(len(chunk)),
            }
        )
    return rows


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |predicted - observed| over score deciles."""
    table = calibration_table(y, p, bins)
    total = sum(row["n"] for row in table)
    return float(sum(row["n"] * abs(row["predicted"] - row["observed"]) for row in table) / total)


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Every binary metric we log, keyed by the name it has in MLflow."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    area = auc(y, p)
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
        "calibration_bias": float(p.mean() - y.mean()),
        "event_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def multiclass_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    y = np.asarray(y, dtype=int)
    proba = np.clip(np.asarray(proba, dtype=float), _EPS, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return float(-np.log(proba[np.arange(len(y)), y]).mean())


def per_class_recall(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall per class; NaN for a class absent from `y`."""
    y = np.asarray(y, dtype=int)
    predicted = np.asarray(predicted, dtype=int)
    recall = np.full(n_classes, np.nan)
    for k in range(n_classes):
        actual = y == k
        if actual.any():
            recall[k] = float((predicted[actual] == k).mean())
    return recall


def macro_f1(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present in `y` or in the predictions."""
    y = np.asarray(y, dtype=int)
    predicted = np.asarray(predicted, dtype=int)
    scores = []
    for k in range(n_classes):
        tp = float(((y == k) & (predicted == k)).sum())
        fp = float(((y != k) & (predicted == k)).sum())
        fn = float(((y == k) & (predicted != k)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def multiclass_metrics(
    y: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Log loss, macro-F1, accuracy and recall per class for class-index labels `y`."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    predicted = proba.argmax(axis=1)
    out = {
        "log_loss": multiclass_log_loss(y, proba),
        "macro_f1": macro_f1(y, predicted, len(classes)),
        "accuracy": float((predicted == y).mean()),
        "rows": float(len(y)),
    }
    for name, value in zip(classes, per_class_recall(y, predicted, len(classes)), strict=True):
        if not np.isnan(value):
            out[f"recall_{name}"] = float(value)
    return out


def stay_rate(current: np.ndarray, following: np.ndarray) -> float:
    """Share of customers whose stage 90 days later equals the current one (training rows)."""
    current = np.asarray(current, dtype=int)
    following = np.asarray(following, dtype=int)
    return float((current == following).mean())


def stay_baseline_proba(current: np.ndarray, n_classes: int, stay: float) -> np.ndarray:
    """The "stays in its current stage" baseline as probabilities.

    It predicts the current stage with the training stay rate and spreads the rest
    evenly: a hard 0/1 prediction would make its log loss infinite and the
    comparison meaningless.
    """
    current = np.asarray(current, dtype=int)
    stay = float(np.clip(stay, 1e-3, 1 - 1e-3))
    proba = np.full((len(current), n_classes), (1 - stay) / (n_classes - 1))
    valid = (current >= 0) & (current < n_classes)
    proba[np.flatnonzero(valid), current[valid]] = stay
    # Unknown current stage: no information, uniform.
    proba[~valid] = 1.0 / n_classes
    return proba
